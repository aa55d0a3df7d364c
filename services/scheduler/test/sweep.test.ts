import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { attestations, createDb, type Db } from '@atmos/db'
import { createRedis, createWorker, type Job, reverifySweep, TypedQueue, verifyAttestation } from '@atmos/queues'
import { createLogger } from '@atmos/runtime'
import {
  createTestDatabase,
  deletePrefix,
  ServiceProcess,
  TEST_REDIS_URL,
  type TestDatabase,
  testRedisPrefix,
} from '@atmos/testkit'
import type { Redis } from 'ioredis'
import { Registry } from 'prom-client'
import { SWEEP_SCHEDULER_ID, Sweeper, scheduledJobId } from '../src/sweep.ts'

const entry = new URL('../src/index.ts', import.meta.url)
const DIDS = Array.from({ length: 5 }, (_, i) => `did:plc:sweep${i}xyoun6zhxrhs64oiz`)
/** The first DID attests a second domain under its own record key (a legacy `self` row beside it). */
const SECOND = { did: DIDS[0]!, rkey: 'second.example', domain: 'second.example' }
/** Every live attestation, as `did rkey`. */
const LIVE = [...DIDS.map((did) => `${did} self`), `${SECOND.did} ${SECOND.rkey}`]

describe('re-verification sweeps', () => {
  let tdb: TestDatabase
  let db: Db
  let redis: Redis
  const prefixes: string[] = []

  before(async () => {
    tdb = await createTestDatabase()
    db = createDb({ url: tdb.url, poolMax: 2 })
    redis = createRedis(TEST_REDIS_URL)
    await db
      .insert(attestations)
      .values([
        ...DIDS.map((did, i) => ({ did, rkey: 'self', domain: `d${i}.example`, dkimSelectors: ['atmos1'] })),
        { ...SECOND, dkimSelectors: ['atmos1r', 'atmos1e'] },
        { did: 'did:plc:gone', rkey: 'self', domain: 'gone.example', deleted: true },
        { did: 'did:plc:bad', rkey: 'self', state: 'rejected' as const, rejectionReason: 'bad' },
      ])
  })
  after(async () => {
    for (const p of prefixes) await deletePrefix(redis, p)
    await redis.quit()
    await db.$client.end()
    await tdb.drop()
  })

  async function verifyJobs(prefix: string): Promise<Job[]> {
    const q = new TypedQueue(verifyAttestation, redis, prefix)
    try {
      return await q.queue.getJobs(['waiting', 'delayed', 'active', 'completed', 'failed', 'prioritized'])
    } finally {
      await q.close()
    }
  }

  it('a retried sweep enqueues every live attestation once for its interval, spread at the rate', async () => {
    const prefix = testRedisPrefix('sweep')
    prefixes.push(prefix)
    const sweeper = new Sweeper({
      db,
      logger: createLogger('test', 'silent'),
      registry: new Registry(),
      redisUrl: TEST_REDIS_URL,
      prefix,
      intervalMs: 60_000,
      rate: 2,
    })
    await sweeper.start()
    try {
      const due = Date.UTC(2026, 10, 25, 12, 0, 30)
      const tick = { opts: { prevMillis: due }, timestamp: due } as unknown as Job
      const first = await sweeper.sweep(60_000, tick)
      const again = await sweeper.sweep(60_000, tick) // the process died and the sweep was retried
      assert.deepEqual(first, { intervalStart: Date.UTC(2026, 10, 25, 12, 0, 0), enqueued: 6 })
      assert.equal(again.enqueued, 6)
      // This interval's jobs only: the sweeper's own tick also fires when the wall clock
      // crosses a minute (intervalMs) during the test, and enqueues that interval.
      const requestedAt = new Date(first.intervalStart).toISOString()
      const jobs = (await verifyJobs(prefix)).filter(
        (j) => j.data.trigger === 'schedule' && j.data.requestedAt === requestedAt,
      )
      assert.equal(jobs.length, 6, 'each attestation once, none for deleted or rejected ones')
      // Both of the first DID's attestations: one job per (DID, record key), not per DID.
      assert.deepEqual(new Set(jobs.map((j) => `${j.data.did} ${j.data.rkey}`)), new Set(LIVE))
      for (const j of jobs) {
        assert.equal(j.id, scheduledJobId(j.data.did, j.data.rkey!, first.intervalStart))
        assert.equal(j.data.requestedAt, new Date(first.intervalStart).toISOString())
      }
      // Spread: 2 per second, so the sixth starts two and a half seconds after the first.
      assert.deepEqual(
        jobs.map((j) => j.opts.delay).sort((a, b) => a! - b!),
        [0, 500, 1000, 1500, 2000, 2500],
      )
    } finally {
      await sweeper.stop()
    }
  })

  it('a Redis that comes back empty (restarted, flushed) gets the sweep schedule back: sweeps go on', async () => {
    const prefix = testRedisPrefix('sweep-flush')
    prefixes.push(prefix)
    const sweeper = new Sweeper({
      db,
      logger: createLogger('test', 'silent'),
      registry: new Registry(),
      redisUrl: TEST_REDIS_URL,
      prefix,
      intervalMs: 2_000,
      rate: 1000,
    })
    const intervalsSwept = async () =>
      new Set((await verifyJobs(prefix)).map((j) => Date.parse(j.data.requestedAt as string)))
    const schedule = async () => {
      const q = new TypedQueue(reverifySweep, redis, prefix)
      try {
        return await q.queue.getJobScheduler(SWEEP_SCHEDULER_ID)
      } finally {
        await q.close()
      }
    }
    await sweeper.start()
    try {
      for (let deadline = Date.now() + 15_000; (await intervalsSwept()).size === 0; await sleep(100))
        assert.ok(Date.now() < deadline, 'a first sweep')
      // Redis keeps nothing on disk: a restart is this, every key gone under a live process.
      assert.ok((await deletePrefix(redis, prefix)) > 0)
      const flushedAt = Date.now()
      // A sweep of an interval that began after the flush: the schedule was put back.
      const later = async () => [...(await intervalsSwept())].some((start) => start > flushedAt)
      for (let deadline = Date.now() + 20_000; !(await later()); await sleep(100))
        assert.ok(Date.now() < deadline, 'no sweep since Redis lost the schedule')
      assert.equal(Number((await schedule())?.every), 2_000)
    } finally {
      await sweeper.stop()
    }
  })

  it('two scheduler processes tick once per interval between them', async () => {
    const prefix = testRedisPrefix('sweep2')
    prefixes.push(prefix)
    const env = {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: prefix,
      ATMOS_HTTP_PORT: '0',
      ATMOS_LOG_LEVEL: 'info',
      ATMOS_SCHEDULER_REVERIFY_INTERVAL: '2s',
      ATMOS_SCHEDULER_VERIFY_RATE: '1000',
    }
    const procs = [new ServiceProcess(entry, env), new ServiceProcess(entry, env)]
    try {
      await Promise.all(procs.map((p) => p.waitForLog((l) => l.msg === 'started')))
      await sleep(5_500)
      const jobs = (await verifyJobs(prefix)).filter((j) => j.data.trigger === 'schedule')
      const byInterval = new Map<string, string[]>()
      for (const j of jobs)
        byInterval.set(j.data.requestedAt, [
          ...(byInterval.get(j.data.requestedAt) ?? []),
          `${j.data.did} ${j.data.rkey}`,
        ])
      assert.ok(byInterval.size >= 2, `expected at least two intervals, saw ${byInterval.size}`)
      for (const [interval, keys] of byInterval) {
        assert.equal(keys.length, LIVE.length, `interval ${interval}: ${keys.length} jobs`)
        assert.deepEqual(new Set(keys), new Set(LIVE))
      }
      // Every job is unique by its id (bullmq refuses a second job with the same id), so the
      // counts above are the proof: one verification per attestation per interval, however
      // many replicas ticked.
      assert.equal(new Set(jobs.map((j) => j.id)).size, jobs.length)
      for (const p of procs) assert.equal((await p.stop('SIGTERM')).code, 0)
    } finally {
      for (const p of procs) await p.stop('SIGKILL')
    }
  })

  it('a scheduler killed mid-run and restarted skips no member and verifies none twice in the interval', async () => {
    const prefix = testRedisPrefix('sweep3')
    prefixes.push(prefix)
    const many = Array.from({ length: 40 }, (_, i) => `did:plc:restart${i}youn6zhxrhs64oiz`)
    await db
      .insert(attestations)
      .values(many.map((did, i) => ({ did, rkey: 'self', domain: `r${i}.example`, dkimSelectors: ['atmos1'] })))
    const all = [...LIVE, ...many.map((did) => `${did} self`)]
    // Stands in for the labeler's verify worker: records what it was asked to verify, when.
    const seen: Array<{ did: string; interval: string }> = []
    const consumerRedis = createRedis(TEST_REDIS_URL)
    const consumer = createWorker(verifyAttestation, consumerRedis, prefix, async (payload) => {
      seen.push({ did: `${payload.did} ${payload.rkey}`, interval: payload.requestedAt })
    })
    const env = {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: prefix,
      ATMOS_HTTP_PORT: '0',
      ATMOS_LOG_LEVEL: 'info',
      ATMOS_SCHEDULER_REVERIFY_INTERVAL: '6s',
      // 46 attestations at 15/s: each interval's run is spread over 3 s.
      ATMOS_SCHEDULER_VERIFY_RATE: '15',
    }
    const first = new ServiceProcess(entry, env)
    let second: ServiceProcess | undefined
    try {
      const swept = await first.waitForLog((l) => l.msg === 'sweep enqueued')
      const interval = String(swept.intervalStart)
      // Mid-run: some of the interval verified, most still spread ahead.
      await sleep(1_000)
      assert.ok(seen.length < all.length, `killed mid-run: ${seen.length} of ${all.length} verified so far`)
      await first.stop('SIGKILL')
      second = new ServiceProcess(entry, env)
      await second.waitForLog((l) => l.msg === 'started')
      // The killed run completes from the queue, and the restarted scheduler ticks the next interval.
      const next = await second.waitForLog((l) => l.msg === 'sweep enqueued' && l.intervalStart !== interval)
      const settled = async (at: string) => {
        const deadline = Date.now() + 20_000
        while (seen.filter((s) => s.interval === at).length < all.length && Date.now() < deadline) await sleep(100)
        await sleep(300) // a duplicate would arrive by now
        return seen.filter((s) => s.interval === at).map((s) => s.did)
      }
      for (const at of [interval, String(next.intervalStart)]) {
        const dids = await settled(at)
        assert.equal(dids.length, all.length, `interval ${at}: ${dids.length} verifications for ${all.length}`)
        assert.deepEqual(new Set(dids), new Set(all), `interval ${at}: every member once`)
      }
      assert.equal((await second.stop('SIGTERM')).code, 0)
    } finally {
      await first.stop('SIGKILL')
      await second?.stop('SIGKILL')
      await consumer.close()
      await consumerRedis.quit()
    }
  })
})
