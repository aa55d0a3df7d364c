import { errorFields, type Logger, retryLogLevel } from '@atmos/runtime'
import { type DeliveryQueue, enqueueRecipient, recipientJobId } from './jobs.ts'
import type { DeliveryMetrics } from './metrics.ts'
import type { DeliverySpool } from './spool.ts'

const BATCH = 1000

/**
 * Postgres is the record of what is left to deliver; Redis (which keeps nothing on disk
 * here) only carries the jobs. At start and then every interval, each recipient that has
 * been due for a whole interval without being claimed gets a job again, unless one for
 * its attempt is still waiting: so losing Redis, or a job, loses no mail.
 */
export class Reconciler {
  private readonly spool: DeliverySpool
  private readonly queue: DeliveryQueue
  private readonly intervalMs: number
  private readonly logger: Logger
  private readonly metrics: DeliveryMetrics
  private readonly bodyRetentionMs: number
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined

  constructor(opts: {
    spool: DeliverySpool
    queue: DeliveryQueue
    intervalMs: number
    logger: Logger
    metrics: DeliveryMetrics
    /** 0 keeps message bodies for good. */
    bodyRetentionMs?: number
  }) {
    this.spool = opts.spool
    this.queue = opts.queue
    this.intervalMs = opts.intervalMs
    this.logger = opts.logger
    this.metrics = opts.metrics
    this.bodyRetentionMs = opts.bodyRetentionMs ?? 0
  }

  start(): void {
    const tick = () => {
      this.running ??= this.reconcile()
        .then(() => undefined)
        .catch((err: Error) =>
          this.logger[retryLogLevel(err)](errorFields(err), 'reconcile failed; retrying next interval'),
        )
        .finally(() => {
          this.running = undefined
        })
    }
    tick()
    this.timer = setInterval(tick, this.intervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.running
  }

  /** One pass; resolves to the number of jobs enqueued. */
  async reconcile(): Promise<number> {
    let enqueued = 0
    const overdue = await this.spool.overdue(this.intervalMs, BATCH)
    for (const r of overdue) {
      const existing = await this.queue.queue.getJob(recipientJobId(r.id, r.attempts))
      if (existing && !(await existing.isCompleted()) && !(await existing.isFailed())) continue
      if (existing) await existing.remove().catch(() => {})
      await enqueueRecipient(this.queue, { messageId: r.messageId, recipientId: r.id, attempts: r.attempts })
      enqueued++
    }
    if (enqueued) {
      this.metrics.reenqueued.inc({}, enqueued)
      this.logger.info({ enqueued, overdue: overdue.length }, 're-enqueued overdue recipients')
    }
    const settled = await this.spool.settleFinished(this.intervalMs)
    if (settled) this.logger.info({ settled }, 'marked done messages with no recipient left to try')
    if (this.bodyRetentionMs > 0) {
      // A bounded amount a pass, so a backlog (retention just shortened) drains over a few intervals.
      let purged = 0
      for (let i = 0; i < 10; i++) {
        const n = await this.spool.purgeBodies(this.bodyRetentionMs, BATCH)
        purged += n
        if (n < BATCH) break
      }
      if (purged) this.logger.info({ purged }, 'dropped the bodies of messages past their retention')
    }
    const depth = await this.spool.depth()
    this.metrics.queueDepth.set({ state: 'queued' }, depth.queued)
    this.metrics.queueDepth.set({ state: 'deferred' }, depth.deferred)
    return enqueued
  }
}
