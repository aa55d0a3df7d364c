import type { Db } from '@atmos/db'
import type { processInbound, TypedQueue } from '@atmos/queues'
import { errorFields, type Logger, retryLogLevel } from '@atmos/runtime'
import { sql } from 'drizzle-orm'
import { inboundJobId } from './jobs.ts'

const BATCH = 1000

export type ReconcileTask = { name: string; run: () => Promise<number> }

/**
 * Postgres is the record and Redis keeps nothing on disk: at start and then every
 * interval, every stored message still 'received' gets its job back. A job that already
 * finished or gave up while its message is still unprocessed is replaced, since its id
 * would otherwise make the new enqueue a no-op.
 */
export class InboundReconciler {
  private readonly db: Db
  private readonly queue: TypedQueue<typeof processInbound>
  private readonly intervalMs: number
  private readonly logger: Logger
  private readonly tasks: ReconcileTask[]
  private timer: NodeJS.Timeout | undefined
  private running: Promise<unknown> | undefined

  constructor(opts: {
    db: Db
    queue: TypedQueue<typeof processInbound>
    intervalMs: number
    logger: Logger
    /** Other follow-ups a crash or a Redis outage may have cut short, run on the same beat. */
    tasks?: ReconcileTask[]
  }) {
    this.tasks = opts.tasks ?? []
    this.db = opts.db
    this.queue = opts.queue
    this.intervalMs = opts.intervalMs
    this.logger = opts.logger
  }

  async start(): Promise<void> {
    await this.runOnce()
    if (this.intervalMs > 0) this.schedule()
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.running = this.runOnce()
        .catch((err: Error) =>
          this.logger[retryLogLevel(err)](errorFields(err), 'inbound reconcile failed; next interval retries'),
        )
        .finally(() => {
          if (this.timer) this.schedule()
        })
    }, this.intervalMs)
    this.timer.unref()
  }

  /** Re-enqueues what has no live job; returns how many jobs it added. */
  async runOnce(): Promise<number> {
    let added = 0
    let after = 0
    for (;;) {
      const rows = await this.db.execute<{ id: string }>(sql`
        select id from inbound_messages where state = 'received' and id > ${after} order by id limit ${BATCH}`)
      for (const r of rows) {
        const id = Number(r.id)
        const jobId = inboundJobId(id)
        const job = await this.queue.queue.getJob(jobId)
        if (job) {
          const state = await job.getState()
          if (state !== 'completed' && state !== 'failed') continue
          await job.remove()
        }
        await this.queue.enqueue({ inboundId: id }, { jobId })
        added++
      }
      if (rows.length < BATCH) break
      after = Number(rows[rows.length - 1]!.id)
    }
    if (added) this.logger.info({ jobs: added }, 'inbound messages re-enqueued')
    for (const task of this.tasks) {
      // One task failing (Redis still down) must not keep the others from running.
      const done = await task.run().catch((err: Error) => {
        this.logger.warn({ task: task.name, err: err.message }, 'reconcile task failed; next interval retries')
        return 0
      })
      if (done) this.logger.info({ task: task.name, count: done }, 'reconciled')
    }
    return added
  }

  async stop(): Promise<void> {
    const t = this.timer
    this.timer = undefined
    if (t) clearTimeout(t)
    await this.running
  }
}

/**
 * Empties the raw bytes of inbound messages received more than `retentionMs` ago and
 * finished (processed, forwarded or quarantined), oldest first, in batches of `batch`, at
 * most `maxBatches` a call so that a backlog (retention just shortened) drains over a few
 * intervals; returns how many. The rows stay with their envelope, kind and size, and so do
 * the events, suppressions and quarantine entries that point at them; only the bytes go.
 */
export async function purgeRawInbound(db: Db, retentionMs: number, batch = BATCH, maxBatches = 10): Promise<number> {
  let purged = 0
  for (let i = 0; i < maxBatches; i++) {
    // Materialized: picked once, so a pass never takes more than its batch.
    const rows = await db.execute<{ id: string }>(sql`
      with picked as materialized (
        -- Replicas' reconcilers share the work instead of waiting on each other's rows.
        select id from inbound_messages
        where state <> 'received' and raw_purged_at is null
          and received_at <= now() - make_interval(secs => ${retentionMs / 1000})
        order by received_at
        limit ${batch}
        for update skip locked)
      update inbound_messages i set raw = ''::bytea, raw_purged_at = now()
      from picked where i.id = picked.id
      returning i.id`)
    purged += rows.length
    if (rows.length < batch) break
  }
  return purged
}
