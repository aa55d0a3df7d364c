import { createHash } from 'node:crypto'
import { attestations, type Db } from '@atmos/db'
import {
  createRedis,
  createWorker,
  type Job,
  reverifySweep,
  TypedQueue,
  verifyAttestation,
  type Worker,
} from '@atmos/queues'
import { type Clock, errorFields, type Logger, retryLogLevel, systemClock, withTimeout } from '@atmos/runtime'
import { and, asc, eq, gt } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import { Counter, Gauge, type Registry } from 'prom-client'

/** The one job scheduler id: every replica upserts the same one, so there is one tick per interval. */
export const SWEEP_SCHEDULER_ID = 'reverify-every-interval'

const PAGE = 1000
const JOB_STATES = ['delayed', 'waiting', 'active', 'completed', 'failed'] as const

/**
 * One attestation's part of a job id: the DID and the record key (a DID attests each of its
 * domains under its own key), made safe for a bullmq id (no ':'), bounded, and told apart
 * by a hash of the key (sanitising alone would make `a-b.example` and `a.b-example` one).
 */
export function attestationJobKey(did: string, rkey: string): string {
  const safe = (s: string) => s.replace(/[^a-zA-Z0-9]/g, '_')
  const hash = createHash('sha256').update(rkey).digest('hex').slice(0, 12)
  return `${safe(did)}_${safe(rkey).slice(0, 40)}_${hash}`
}

/** The id of an attestation's scheduled verification in one interval: enqueued at most once. */
export function scheduledJobId(did: string, rkey: string, intervalStart: number): string {
  return `sched_${attestationJobKey(did, rkey)}_${intervalStart}`
}

type JobFor = (attestation: { did: string; rkey: string }) => {
  payload: { trigger: 'schedule' | 'manual'; requestedAt: string }
  jobId: string
}

/**
 * Enqueues a verify job for every live attestation, in id order, the n-th delayed by
 * n / rate seconds so DNS sees at most `rate` verifications a second. Returns how many.
 */
export async function enqueueAllLive(
  db: Db,
  queue: TypedQueue<typeof verifyAttestation>,
  rate: number,
  jobFor: JobFor,
): Promise<number> {
  let index = 0
  let lastId = 0
  for (;;) {
    const page = await db
      .select({ id: attestations.id, did: attestations.did, rkey: attestations.rkey })
      .from(attestations)
      .where(and(eq(attestations.deleted, false), eq(attestations.state, 'valid'), gt(attestations.id, lastId)))
      .orderBy(asc(attestations.id))
      .limit(PAGE)
    if (!page.length) break
    lastId = page[page.length - 1]!.id
    await queue.enqueueBulk(
      page.map((row) => {
        const { payload, jobId } = jobFor(row)
        return {
          payload: { did: row.did, rkey: row.rkey, ...payload },
          opts: { jobId, delay: Math.floor((index++ / rate) * 1000) },
        }
      }),
    )
    if (page.length < PAGE) break
  }
  return index
}

/**
 * Re-verification on an interval. A bullmq job scheduler ticks once per interval whatever
 * the number of scheduler replicas; the tick's sweep enqueues one verify job per live
 * attestation, spread over the interval at `verifyRate` per second. Job ids carry the
 * interval, so a sweep that is retried (its process died mid-way) skips nobody and
 * verifies nobody twice.
 */
export class Sweeper {
  private readonly db: Db
  private readonly logger: Logger
  private readonly redisUrl: string
  private readonly prefix: string
  private readonly intervalMs: number
  private readonly rate: number
  private readonly clock: Clock
  private connections: Redis[] = []
  private worker: Worker | undefined
  private sweepQueue: TypedQueue<typeof reverifySweep> | undefined
  private verifyQueue: TypedQueue<typeof verifyAttestation> | undefined
  private readonly scheduleCheckMs: number
  private scheduleTimer: NodeJS.Timeout | undefined
  private readonly metrics

  constructor(opts: {
    db: Db
    logger: Logger
    registry: Registry
    redisUrl: string
    prefix: string
    intervalMs: number
    rate: number
    clock?: Clock
    /** How often the job scheduler is checked to still be in Redis; min(interval, 1 min) unless told. */
    scheduleCheckMs?: number
  }) {
    this.clock = opts.clock ?? systemClock
    this.db = opts.db
    this.logger = opts.logger.child({ concern: 'sweep' })
    this.redisUrl = opts.redisUrl
    this.prefix = opts.prefix
    this.intervalMs = opts.intervalMs
    this.rate = opts.rate
    this.scheduleCheckMs = opts.scheduleCheckMs ?? Math.min(opts.intervalMs, 60_000)
    const registers = [opts.registry]
    const sweeper = this
    this.metrics = {
      due: new Gauge({ name: 'atmos_scheduler_jobs_due', help: 'Attestations due in the current interval', registers }),
      enqueued: new Counter({
        name: 'atmos_scheduler_jobs_enqueued_total',
        help: 'Verify jobs enqueued by sweeps',
        registers,
      }),
      backlog: new Gauge({
        name: 'atmos_scheduler_backlog_seconds',
        help: 'How far the spread of one interval runs past its end at the configured rate (0: it fits)',
        registers,
      }),
      lag: new Gauge({
        name: 'atmos_scheduler_sweep_lag_seconds',
        help: 'Sweep start minus the time its tick was due',
        registers,
      }),
      // Read from the queue at scrape time, so every replica reports the same truth
      // instead of each counting the events it happened to see.
      jobs: new Gauge({
        name: 'atmos_scheduler_verify_jobs',
        help: 'Verify jobs by state: delayed and waiting are due, completed done, failed failed (kept 7 days)',
        labelNames: ['state'],
        registers,
        collect: async function (this: Gauge) {
          // While Redis is down the count would wait for it, and the whole scrape with it.
          const counts = await bounded(sweeper.verifyQueueFor().queue.getJobCounts(...JOB_STATES))
          if (counts) for (const state of JOB_STATES) this.set({ state }, counts[state] ?? 0)
        },
      }),
      behind: new Gauge({
        name: 'atmos_scheduler_verify_lag_seconds',
        help: 'How long the oldest waiting verify job has been past its scheduled time (0: workers keep up)',
        registers,
        collect: async function (this: Gauge) {
          const waiting = await bounded(sweeper.verifyQueueFor().queue.getJobs(['waiting'], -1, -1, true))
          if (!waiting) return
          const [oldest] = waiting
          const due = oldest ? oldest.timestamp + (oldest.opts.delay ?? 0) : undefined
          this.set(due === undefined ? 0 : Math.max(0, (sweeper.clock.now().getTime() - due) / 1000))
        },
      }),
    }
  }

  /** The verify queue, opened on first use (a sweep, or a metrics scrape). */
  private verifyQueueFor(): TypedQueue<typeof verifyAttestation> {
    this.verifyQueue ??= new TypedQueue(verifyAttestation, this.connection(), this.prefix)
    return this.verifyQueue
  }

  private connection(): Redis {
    const c = createRedis(this.redisUrl)
    c.on('error', () => {})
    this.connections.push(c)
    return c
  }

  async start(): Promise<void> {
    const shared = this.connection()
    this.sweepQueue = new TypedQueue(reverifySweep, shared, this.prefix)
    await this.ensureSchedule(false)
    // The schedule lives in Redis, which keeps nothing on disk: a Redis that restarted (or
    // was flushed) under a running scheduler would otherwise never tick again, silently,
    // until this process restarts. Put it back on reconnect and check on a beat.
    shared.on('ready', () => void this.ensureScheduleQuietly())
    this.scheduleTimer = setInterval(() => void this.ensureScheduleQuietly(), this.scheduleCheckMs)
    this.scheduleTimer.unref()
    this.worker = createWorker(reverifySweep, this.connection(), this.prefix, (payload, job) =>
      this.sweep(payload.intervalMs, job),
    )
    this.worker.on('failed', (job, err) =>
      this.logger[retryLogLevel(err)]({ jobId: job?.id, ...errorFields(err) }, 'sweep failed'),
    )
  }

  /**
   * Upserts the job scheduler unless it is in Redis as configured. Replicas starting
   * together may each upsert and so cause one extra tick in the first interval; the job ids
   * absorb it. A scheduler that is already right is left alone (an upsert restarts its beat).
   */
  private async ensureSchedule(restoring: boolean): Promise<void> {
    const queue = this.sweepQueue
    if (!queue) return
    const existing = await queue.queue.getJobScheduler(SWEEP_SCHEDULER_ID)
    if (Number(existing?.every) === this.intervalMs) return
    await queue.queue.upsertJobScheduler(
      SWEEP_SCHEDULER_ID,
      { every: this.intervalMs },
      { name: reverifySweep.name, data: { intervalMs: this.intervalMs } },
    )
    if (restoring)
      this.logger.warn(
        { intervalSeconds: this.intervalMs / 1000 },
        'the sweep schedule was gone from Redis (restarted or flushed): put back',
      )
  }

  private async ensureScheduleQuietly(): Promise<void> {
    try {
      await this.ensureSchedule(true)
    } catch (err) {
      this.logger[retryLogLevel(err)](errorFields(err), 'cannot check the sweep schedule; retrying')
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.scheduleTimer)
    this.scheduleTimer = undefined
    await this.worker?.close()
    await this.sweepQueue?.close()
    this.sweepQueue = undefined
    await this.verifyQueue?.close()
    this.verifyQueue = undefined
    await Promise.all(this.connections.map((c) => c.quit().catch(() => c.disconnect())))
    this.connections = []
  }

  /** The tick's sweep: the interval is the bucket of the time the tick was due. */
  async sweep(intervalMs: number, job: Job): Promise<{ intervalStart: number; enqueued: number }> {
    const dueAt = job.opts.prevMillis ?? job.timestamp
    this.metrics.lag.set(Math.max(0, (this.clock.now().getTime() - dueAt) / 1000))
    return this.enqueueInterval(Math.floor(dueAt / intervalMs) * intervalMs, intervalMs)
  }

  /** Enqueues one interval's verification of every live attestation; returns how many. */
  async enqueueInterval(
    intervalStart: number,
    intervalMs: number,
  ): Promise<{ intervalStart: number; enqueued: number }> {
    const requestedAt = new Date(intervalStart).toISOString()
    // Opened on first use, so an interval can be enqueued without the tick (tests, tools).
    const index = await enqueueAllLive(this.db, this.verifyQueueFor(), this.rate, ({ did, rkey }) => ({
      payload: { trigger: 'schedule', requestedAt },
      jobId: scheduledJobId(did, rkey, intervalStart),
    }))
    const spreadMs = (index / this.rate) * 1000
    this.metrics.due.set(index)
    this.metrics.enqueued.inc(index)
    this.metrics.backlog.set(Math.max(0, (spreadMs - intervalMs) / 1000))
    if (spreadMs > intervalMs) {
      this.logger.warn(
        { attestations: index, rate: this.rate, spreadSeconds: spreadMs / 1000, intervalSeconds: intervalMs / 1000 },
        'more verification than fits in one interval at this rate: raise scheduler.verifyRate',
      )
    }
    this.logger.info({ intervalStart: requestedAt, attestations: index }, 'sweep enqueued')
    return { intervalStart, enqueued: index }
  }
}

/** The value, or undefined when Redis does not answer within a scrape's patience (the gauge keeps its last value). */
function bounded<T>(promise: Promise<T>): Promise<T | undefined> {
  return withTimeout(promise, 1000, 'redis').catch(() => undefined)
}
