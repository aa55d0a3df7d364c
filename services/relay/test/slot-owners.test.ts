import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createPool, type Pool } from '@atmos/db'
import { createDkimKey } from '@atmos/dkim'
import { loadKeyring } from '@atmos/secrets'
import {
  createTestDatabase,
  deletePrefix,
  ServiceProcess,
  type TestDatabase,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import type { Redis } from 'ioredis'
import SMTPConnection from 'nodemailer/lib/smtp-connection'
import { SiteLimiter } from '../src/delivery/site-limiter.ts'
import { OWNER_TTL_MS } from '../src/delivery/slot-owner.ts'
import {
  type DeliveryWorld,
  enqueueDelivery,
  eventually,
  seedMember,
  spoolMessage,
  startDeliveryWorld,
} from './delivery-helpers.ts'
import { createMember, POOL_DOMAIN, relayFiles, submissionEnv } from './helpers.ts'

// Slots a process holds in Redis (delivery sites' connections, members' submission
// connections) name their owner, whose liveness key lapses seconds after it dies: a
// replacement takes a killed process's slots within seconds, not a lease (here 60 s) later.

const RELAY_ENTRY = new URL('../src/index.ts', import.meta.url)
const LONG_LEASE = '60s'
/** Well under the 60 s lease (the liveness key lapses in 4 s); generous for a loaded machine. */
const RECLAIM_WITHIN_MS = 25_000

async function slotKeys(redis: Redis, pattern: string): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500)
    cursor = next
    found.push(...keys)
  } while (cursor !== '0')
  return found
}

describe('a live owner keeps its slots', () => {
  let redis: Redis
  const prefix = testRedisPrefix('slot-owner')
  before(() => {
    redis = testRedis()
  })
  after(async () => {
    await deletePrefix(redis, prefix)
    await redis.quit()
  })

  it('while it renews its liveness, past the liveness key lifetime, another process cannot take them', async () => {
    const limiter = (r: Redis) =>
      new SiteLimiter({
        redis: r,
        prefix,
        leaseMs: 60_000,
        slowDown: { forMs: 1000, connections: 1, ratePerSecond: 1 },
      })
    const holderRedis = testRedis()
    const holder = limiter(holderRedis)
    const other = limiter(redis)
    assert.equal(await holder.tryAcquire('mx:live.test', 'a', 2), true)
    assert.equal(await holder.tryAcquire('mx:live.test', 'b', 2), true)
    // The other process keeps asking for a lifetime and a half of the liveness key: the holder's
    // once-a-second renewal keeps it, so the site stays full the whole time.
    const until = Date.now() + OWNER_TTL_MS * 1.5
    let asked = 0
    while (Date.now() < until) {
      assert.equal(await other.tryAcquire('mx:live.test', `c${asked++}`, 2), false)
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(await holder.held('mx:live.test'), 2)
    // Released slots are free at once.
    await holder.release('mx:live.test', 'a')
    assert.equal(await other.tryAcquire('mx:live.test', 'c', 2), true)
    await holderRedis.quit()
  })
})

describe('delivery slots of a killed process', () => {
  let world: DeliveryWorld
  let sql: Pool

  before(async () => {
    world = await startDeliveryWorld(
      'dead-owner',
      { a: '127.0.0.5' },
      {
        'dead-owner.test': { MX: [{ priority: 10, exchange: 'mx.dead-owner.test' }] },
        'mx.dead-owner.test': { A: ['127.0.0.5'] },
      },
    )
    sql = world.sql
  })
  after(async () => {
    await world?.close()
  })

  it('are taken by a replacement within seconds of a kill -9, not after their lease', async () => {
    const limit = 2
    const sink = world.sinks.a!
    // Sessions stay open (idle) and hold their slots until the process dies.
    const env = world.env({
      ATMOS_RELAY_DELIVERY_CONCURRENCY: '4',
      ATMOS_RELAY_DELIVERY_SHAPING_MAX_CONNECTIONS: String(limit),
      ATMOS_RELAY_DELIVERY_SHAPING_SLOT_LEASE: LONG_LEASE,
      ATMOS_RELAY_DELIVERY_SHAPING_IDLE_TIMEOUT: '5m',
    })
    const memberId = await seedMember(sql, 'member.example')
    sink.dataDelayMs = 300
    const first = await world.startProcess(env)
    const before = []
    for (let i = 0; i < 4; i++) before.push(await spoolMessage(sql, { memberId, to: `early${i}@dead-owner.test` }))
    await enqueueDelivery(
      world.prefix,
      before.map((s) => s.messageId),
    )
    const redis = testRedis()
    try {
      const slots = await eventually(
        async () => {
          const [key] = await slotKeys(redis, `${world.prefix}:delivery:site:*:slots`)
          return key && sink.received.length >= 4 && (await redis.zcard(key)) === limit ? key : undefined
        },
        20_000,
        'the first process to deliver and hold every slot of the site',
      )
      assert.equal((await first.stop('SIGKILL')).signal, 'SIGKILL')
      sink.dataDelayMs = 0
      // The dead process's slots are still there: only their owner is gone.
      assert.equal(await redis.zcard(slots), limit)

      const second = await world.startProcess(env)
      const started = Date.now()
      const late = await spoolMessage(sql, { memberId, to: 'late@dead-owner.test' })
      await enqueueDelivery(world.prefix, [late.messageId])
      await eventually(
        async () => (sink.received.some((m) => m.rcptTo.includes('late@dead-owner.test')) ? true : undefined),
        RECLAIM_WITHIN_MS,
        'the replacement to deliver to the site whose slots the killed process held',
      )
      const tookMs = Date.now() - started
      assert.ok(tookMs < 60_000 / 2, `delivered ${tookMs} ms after the replacement started`)
      assert.equal((await second.stop('SIGTERM')).code, 0)
    } finally {
      await redis.quit()
    }
  })
})

describe('member connection slots of a killed submission process', () => {
  let db: TestDatabase
  let sql: Pool
  const prefix = testRedisPrefix('dead-member')
  const procs: ServiceProcess[] = []
  const clients: SMTPConnection[] = []

  before(async () => {
    db = await createTestDatabase()
    sql = createPool({ url: db.url, poolMax: 2 })
  })
  after(async () => {
    for (const c of clients) c.close()
    for (const p of procs) await p.stop('SIGKILL')
    const redis = testRedis()
    await deletePrefix(redis, prefix)
    await redis.quit()
    await sql?.end({ timeout: 5 })
    await db?.drop()
  })

  async function startSubmissionProcess(env: Record<string, string>): Promise<number> {
    const proc = new ServiceProcess(RELAY_ENTRY, env)
    procs.push(proc)
    const line = await proc.waitForLog((l) => l.msg === 'submission listening (STARTTLS)')
    return Number(String(line.smtp).split(':').at(-1))
  }

  async function login(port: number, user: string, pass: string): Promise<SMTPConnection> {
    const c = new SMTPConnection({
      host: '127.0.0.1',
      port,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
    })
    c.on('error', () => {})
    clients.push(c)
    await new Promise<void>((resolve, reject) => c.connect((err?: Error) => (err ? reject(err) : resolve())))
    try {
      await new Promise<void>((resolve, reject) =>
        c.login({ user, pass }, (err?: Error | null) => (err ? reject(err) : resolve())),
      )
    } catch (err) {
      c.close()
      throw err
    }
    return c
  }

  it('let the member log in to a new process at once after a kill -9', async () => {
    const limit = 2
    const files = relayFiles()
    await createDkimKey(sql, loadKeyring(files.poolKekFile), { memberId: null, domain: POOL_DOMAIN, selector: 'pool1' })
    const member = await createMember({ sql, keyring: loadKeyring(files.kekFile) }, 'dead-member.example')
    const env = submissionEnv({
      databaseUrl: db.url,
      redisPrefix: prefix,
      files,
      extra: {
        ATMOS_LOG_LEVEL: 'info',
        ATMOS_RELAY_SUBMISSION_MAX_CONNECTIONS_PER_MEMBER: String(limit),
        // The member slots' lease is max(30 s, socketTimeout): 60 s by default.
      },
    })
    const firstPort = await startSubmissionProcess(env)
    for (let i = 0; i < limit; i++) await login(firstPort, member.username, member.password)
    await assert.rejects(login(firstPort, member.username, member.password), /454 4\.7\.0/)
    await procs[0]!.stop('SIGKILL')

    const secondPort = await startSubmissionProcess(env)
    const started = Date.now()
    const client = await eventually(
      () => login(secondPort, member.username, member.password).catch(() => undefined),
      RECLAIM_WITHIN_MS,
      'the member to log in to the new process',
    )
    assert.ok(client)
    const tookMs = Date.now() - started
    assert.ok(tookMs < 60_000 / 2, `logged in ${tookMs} ms after the new process started`)
  })
})
