import { attestations, type Db } from '@atmos/db'
import { ATTESTATION_COLLECTION } from '@atmos/lexicon'
import { TypedQueue, verifyAttestation } from '@atmos/queues'
import { errorFields, type Logger, retryLogLevel } from '@atmos/runtime'
import { and, isNotNull, lt, sql } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { LabelManager } from '../labels/manager.ts'
import type { StoredLabel } from '../labels/writer.ts'
import { enqueueRequests, type VerifyRequest, verifyJobId } from '../verify/requests.ts'
import type { IngestEvent } from './events.ts'
import { FirehoseSource } from './firehose.ts'
import { JetstreamSource, type SourceHandlers } from './jetstream.ts'
import { MemberFilter } from './member-filter.ts'
import { IngestProcessor } from './processor.ts'
import { SourceHealth } from './source-health.ts'

/** Session-level advisory lock held by the one labeler process that ingests ("atmosing"). */
export const INGEST_LEADER_LOCK = 0x61746d6f73696e67n

export type IngesterOptions = {
  source: 'jetstream' | 'firehose'
  jetstreamUrl: string
  firehoseUrl: string
  plcUrl: string
  rewindMs: number
  reconnectMinMs: number
  reconnectMaxMs: number
  cursorFlushMs: number
  reconcileMs: number
  maxRecordsPerDid: number
}

export { verifyJobId } from '../verify/requests.ts'

/**
 * Runs ingest in exactly one labeler process: whoever holds the leader lock subscribes
 * to the source and applies events; the others serve reads and wait for the lock. Also
 * re-enqueues verification requests that never reached the queue (Redis lost or down).
 */
export class Ingester {
  private readonly db: Db
  private readonly logger: Logger
  private readonly opts: IngesterOptions
  private readonly members = new MemberFilter()
  private readonly processor: IngestProcessor
  private readonly verifyQueue: TypedQueue<typeof verifyAttestation>
  private source: JetstreamSource | FirehoseSource | undefined
  private leader: { release: () => Promise<void>; check: () => Promise<void> } | undefined
  private timers: NodeJS.Timeout[] = []
  private stopped = false
  private pendingCursor: number | undefined
  private health = new SourceHealth()
  private readonly metrics
  private readonly onLabels: (labels: StoredLabel[]) => void

  constructor(opts: {
    db: Db
    redis: Redis
    redisPrefix: string
    labels: LabelManager
    logger: Logger
    registry: Registry
    options: IngesterOptions
    /** Labels committed by ingest (deletions, deactivations), for the metrics. */
    onLabels?: (labels: StoredLabel[]) => void
  }) {
    this.onLabels = opts.onLabels ?? (() => {})
    this.db = opts.db
    this.logger = opts.logger.child({ concern: 'ingest' })
    this.opts = opts.options
    this.processor = new IngestProcessor({
      db: opts.db,
      labels: opts.labels,
      members: this.members,
      logger: this.logger,
      maxRecordsPerDid: opts.options.maxRecordsPerDid,
      // Each source has a cursor of its own: Jetstream's time_us, a firehose host's seq.
      source: opts.options.source === 'jetstream' ? 'jetstream' : `firehose:${new URL(opts.options.firehoseUrl).host}`,
    })
    this.verifyQueue = new TypedQueue(verifyAttestation, opts.redis, opts.redisPrefix)
    const registers = [opts.registry]
    const self = this
    this.metrics = {
      events: new Counter({
        name: 'atmos_labeler_ingest_events_total',
        help: 'Events from the source, by kind and outcome (dropped: not ours, cheaply; refused: an impossible key, or past the DID row limit)',
        labelNames: ['kind', 'outcome'],
        registers,
      }),
      malformed: new Counter({
        name: 'atmos_labeler_ingest_malformed_total',
        help: 'Frames that could not be used',
        registers,
      }),
      lag: new Gauge({
        name: 'atmos_labeler_ingest_lag_seconds',
        help: "How far behind the network ingest is: the last applied event's age when it was applied, plus, while the source is unreachable, the time since it went away (0 in a process that does not ingest)",
        registers,
        collect() {
          this.set(self.leader ? self.health.lagSeconds() : 0)
        },
      }),
      connected: new Gauge({
        name: 'atmos_labeler_ingest_connected',
        help: '1 while this process ingests and its source (Jetstream or firehose) is connected, else 0',
        registers,
        collect() {
          this.set(self.leader && self.health.isConnected ? 1 : 0)
        },
      }),
      leader: new Gauge({ name: 'atmos_labeler_ingest_leader', help: '1 while this process ingests', registers }),
    }
  }

  get isLeader(): boolean {
    return this.leader !== undefined
  }

  start(): void {
    this.stopped = false
    void this.tryLead()
    this.timers.push(setInterval(() => void this.tryLead(), 5000))
    this.timers.push(setInterval(() => void this.flushCursor(), this.opts.cursorFlushMs))
    // A request older than one interval has had its chance to be queued: a Redis that came
    // back empty is caught up within two intervals, as the setting says, not a fixed minute.
    this.timers.push(setInterval(() => void this.reconcile(this.opts.reconcileMs), this.opts.reconcileMs))
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    await this.source?.stop()
    this.source = undefined
    await this.flushCursor()
    await this.leader?.release()
    this.leader = undefined
    this.metrics.leader.set(0)
    await this.verifyQueue.close()
  }

  /** Takes the leader lock if free and starts the source; checks a held lock is still held. */
  private async tryLead(): Promise<void> {
    if (this.stopped) return
    if (this.leader) {
      try {
        await this.leader.check()
      } catch (err) {
        this.logger.warn(errorFields(err), 'lost the ingest lock; stopping ingest')
        await this.source?.stop()
        this.source = undefined
        this.leader = undefined
        this.metrics.leader.set(0)
        this.health.connection(false)
      }
      return
    }
    try {
      const conn = await this.db.$client.reserve()
      const [row] = await conn`select pg_try_advisory_lock(${INGEST_LEADER_LOCK.toString()}::bigint) as locked`
      if (!row?.locked || this.stopped) {
        conn.release()
        return
      }
      this.leader = {
        check: async () => {
          await conn`select 1`
        },
        release: async () => {
          await conn`select pg_advisory_unlock(${INGEST_LEADER_LOCK.toString()}::bigint)`.catch(() => {})
          conn.release()
        },
      }
      this.metrics.leader.set(1)
      // Down from the moment this process is meant to ingest until the source answers.
      this.health = new SourceHealth()
      await this.members.load(this.db)
      this.logger.info({ members: this.members.size }, 'ingest leader: subscribing')
      // The previous leader is gone: whatever it recorded but never queued is queued now, not a
      // minute later (job ids make a request already in the queue a no-op).
      await this.reconcile(0)
      const handlers: SourceHandlers = {
        onEvent: (e) => this.onEvent(e),
        onMalformed: (reason, cursor) => {
          this.metrics.malformed.inc()
          this.logger.warn({ reason }, 'malformed event skipped')
          if (cursor !== undefined) this.pendingCursor = Math.max(this.pendingCursor ?? 0, cursor)
        },
        resumeFrom: async () => {
          await this.flushCursor()
          return this.processor.loadCursor()
        },
        onConnection: (up) => this.health.connection(up),
      }
      this.source =
        this.opts.source === 'jetstream'
          ? new JetstreamSource(
              {
                url: this.opts.jetstreamUrl,
                collections: [ATTESTATION_COLLECTION],
                rewindUs: this.opts.rewindMs * 1000,
                reconnectMinMs: this.opts.reconnectMinMs,
                reconnectMaxMs: this.opts.reconnectMaxMs,
                highWaterMark: 1000,
              },
              handlers,
              this.logger,
            )
          : new FirehoseSource(
              {
                service: this.opts.firehoseUrl,
                collections: [ATTESTATION_COLLECTION],
                plcUrl: this.opts.plcUrl,
                reconnectMaxMs: this.opts.reconnectMaxMs,
              },
              handlers,
              this.logger,
            )
      this.source.start()
    } catch (err) {
      this.logger[retryLogLevel(err)](errorFields(err), 'cannot take the ingest lock yet')
    }
  }

  private async onEvent(event: IngestEvent): Promise<void> {
    // A firehose's cursor is a sequence number, not a time: its events carry their time.
    const timeS = event.time
      ? Date.parse(event.time) / 1000
      : this.opts.source === 'jetstream'
        ? event.cursor / 1e6
        : NaN
    this.health.event(timeS)
    if (!this.processor.isRelevant(event)) {
      // Not ours: no transaction, the cursor catches up on the next flush.
      this.pendingCursor = Math.max(this.pendingCursor ?? 0, event.cursor)
      this.metrics.events.inc({ kind: event.kind, outcome: 'dropped' })
      return
    }
    const result = await this.processor.apply(event)
    this.metrics.events.inc({ kind: event.kind, outcome: result.outcome })
    if (result.labels?.length) this.onLabels(result.labels)
    if (result.verify?.length) await enqueueRequests(this.verifyQueue, result.verify, this.logger)
  }

  private async flushCursor(): Promise<void> {
    const cursor = this.pendingCursor
    if (cursor === undefined) return
    try {
      await this.processor.saveCursor(this.db, cursor)
      if (this.pendingCursor === cursor) this.pendingCursor = undefined
    } catch (err) {
      this.logger[retryLogLevel(err)](errorFields(err), 'cursor flush failed')
    }
  }

  /** Re-enqueues verification requests no worker has answered, older than `minAgeMs` (an interval on the timer). */
  async reconcile(minAgeMs = 60_000): Promise<number> {
    if (!this.leader) return 0
    try {
      const due = await this.db
        .select({
          did: attestations.did,
          rkey: attestations.rkey,
          requestedAt: attestations.verifyRequestedAt,
          trigger: attestations.verifyTrigger,
        })
        .from(attestations)
        .where(
          and(
            isNotNull(attestations.verifyRequestedAt),
            lt(attestations.verifyRequestedAt, sql`now() - make_interval(secs => ${minAgeMs / 1000})`),
          ),
        )
        .limit(1000)
      const requests: VerifyRequest[] = due.map((row) => ({
        did: row.did,
        rkey: row.rkey,
        trigger: row.trigger === 'identity' || row.trigger === 'release' ? row.trigger : 'ingest',
        requestedAt: row.requestedAt!,
      }))
      // A finished job is kept (for days, one that gave up: its retries spent while Postgres
      // was down, say) under the request's id, which would make the enqueue a no-op and leave
      // the request unanswered: replace it. One waiting or running is left alone.
      for (const request of requests) {
        const job = await this.verifyQueue.queue.getJob(verifyJobId(request))
        if (job && ((await job.isFailed()) || (await job.isCompleted()))) await job.remove()
      }
      await enqueueRequests(this.verifyQueue, requests, this.logger)
      return due.length
    } catch (err) {
      this.logger[retryLogLevel(err)](errorFields(err), 'verify reconcile failed')
      return 0
    }
  }
}
