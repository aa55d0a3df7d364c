import type { Db } from '@atmos/db'
import { labels } from '@atmos/db'
import type { Logger } from '@atmos/runtime'
import { max } from 'drizzle-orm'
import type { LabelRow } from './rows.ts'
import { LABELS_CHANNEL, RESIGNED } from './writer.ts'

export class FutureCursorError extends Error {
  override name = 'FutureCursorError'
}
export class ConsumerTooSlowError extends Error {
  override name = 'ConsumerTooSlowError'
}

type RawLabelRow = Omit<LabelRow, 'seq' | 'signingKeyId' | 'createdAt'> & { seq: string; signing_key_id: number }

type Subscriber = {
  queue: LabelRow[]
  wake: (() => void) | undefined
  tooSlow: boolean
}

/**
 * Live label events for this process's subscribers. Every labeler process LISTENs on the
 * labels channel and, on each commit announcement, reads the new rows once and hands them
 * to each subscriber's bounded queue: fan-out works across processes without a shared
 * in-memory set, and a slow subscriber is cut off instead of stalling the others.
 */
export class LabelStream {
  private readonly db: Db
  private readonly logger: Logger
  private readonly maxBuffer: number
  private readonly pageSize: number
  private readonly subscribers = new Set<Subscriber>()
  private lastSeq = 0
  private polling: Promise<void> | undefined
  private pollAgain = false
  private unlisten: (() => Promise<void>) | undefined
  private readonly changeListeners: Array<(changed: LabelRow[] | 'all') => void> = []

  constructor(db: Db, logger: Logger, opts: { maxBuffer: number; pageSize: number }) {
    this.db = db
    this.logger = logger
    this.maxBuffer = opts.maxBuffer
    this.pageSize = opts.pageSize
  }

  /**
   * Called (in this process) with the new labels once they are read, before any
   * subscriber gets them, or with 'all' when every label may have changed (re-signed):
   * e.g. to drop the cached pages they show on.
   */
  onChange(listener: (changed: LabelRow[] | 'all') => void): void {
    this.changeListeners.push(listener)
  }

  get subscriberCount(): number {
    return this.subscribers.size
  }

  async start(): Promise<void> {
    this.lastSeq = await this.maxSeq()
    const listener = await this.db.$client.listen(
      LABELS_CHANNEL,
      // Re-signed labels keep their seq: nothing to stream, but cached pages are stale.
      (payload) => (payload === RESIGNED ? this.changed('all') : this.poll()),
      // Called again after a reconnect: catch up on anything announced while deaf.
      () => this.poll(),
    )
    this.unlisten = () => listener.unlisten()
  }

  async stop(): Promise<void> {
    await this.unlisten?.()
    await this.polling
    for (const sub of this.subscribers) sub.wake?.()
    this.subscribers.clear()
  }

  /** Up to pageSize rows after `after`, in seq order; raw SQL, as this is the replay hot path. */
  private async rowsAfter(after: number): Promise<LabelRow[]> {
    const rows = await this.db.$client<RawLabelRow[]>`
      select seq::int8::text as seq, ver, src, uri, cid, val, neg, cts, exp, sig, signing_key_id, reason
      from labels where labels.seq > ${after} order by labels.seq limit ${this.pageSize}`
    return rows.map(
      (r) => ({ ...r, seq: Number(r.seq), signingKeyId: r.signing_key_id, createdAt: new Date(0) }) as LabelRow,
    )
  }

  async maxSeq(): Promise<number> {
    const [row] = await this.db.select({ seq: max(labels.seq) }).from(labels)
    return Number(row?.seq ?? 0)
  }

  private changed(changed: LabelRow[] | 'all'): void {
    for (const listener of this.changeListeners) listener(changed)
  }

  /** Reads what committed since the last read and queues it for every subscriber. */
  poll(): void {
    if (this.polling) {
      this.pollAgain = true
      return
    }
    this.polling = (async () => {
      do {
        this.pollAgain = false
        for (;;) {
          const rows = await this.rowsAfter(this.lastSeq)
          if (!rows.length) break
          this.lastSeq = rows[rows.length - 1]!.seq
          this.changed(rows)
          for (const sub of this.subscribers) this.deliver(sub, rows)
          if (rows.length < this.pageSize) break
        }
      } while (this.pollAgain)
    })()
      .catch((err) => this.logger.error({ err }, 'label stream poll failed'))
      .finally(() => {
        this.polling = undefined
      })
  }

  private deliver(sub: Subscriber, rows: LabelRow[]) {
    if (sub.tooSlow) return
    if (sub.queue.length + rows.length > this.maxBuffer) {
      sub.tooSlow = true
      sub.queue.length = 0
    } else sub.queue.push(...rows)
    sub.wake?.()
  }

  /** Every label after `cursor`, one at a time (see subscribeBatches). */
  async *subscribe(cursor: number | undefined, signal: AbortSignal): AsyncGenerator<LabelRow> {
    for await (const batch of this.subscribeBatches(cursor, signal)) yield* batch
  }

  /**
   * Every label after `cursor` in seq order, then live ones; without a cursor, live ones
   * only. The subscriber registers for live events before the backfill starts and the
   * overlap is dropped by seq, so nothing committed during the backfill is lost. Rows come
   * in batches (a backfill page, or whatever arrived live) so that a sender can write
   * them to the socket in one go.
   */
  async *subscribeBatches(cursor: number | undefined, signal: AbortSignal): AsyncGenerator<LabelRow[]> {
    const sub: Subscriber = { queue: [], wake: undefined, tooSlow: false }
    if (cursor !== undefined && cursor > (await this.maxSeq())) {
      throw new FutureCursorError('Cursor in the future.')
    }
    this.subscribers.add(sub)
    const onAbort = () => sub.wake?.()
    signal.addEventListener('abort', onAbort)
    try {
      let last = cursor ?? 0
      if (cursor !== undefined) {
        // The next page is asked for before this one is handed over, so that Postgres reads
        // it while this one is encoded and written instead of after.
        let next: Promise<LabelRow[]> | undefined = this.rowsAfter(last)
        try {
          while (next) {
            const rows: LabelRow[] = await next
            next = undefined
            if (signal.aborted) return
            if (rows.length === this.pageSize) next = this.rowsAfter(rows[rows.length - 1]!.seq)
            if (rows.length) {
              last = rows[rows.length - 1]!.seq
              yield rows
            }
          }
        } finally {
          // A prefetch the subscriber left before reading: its outcome no longer matters.
          next?.catch(() => {})
        }
      }
      while (!signal.aborted) {
        if (sub.tooSlow) throw new ConsumerTooSlowError('Stream consumer too slow')
        if (sub.queue.length) {
          const fresh = sub.queue.splice(0, sub.queue.length).filter((row) => row.seq > last)
          if (fresh.length) {
            last = fresh[fresh.length - 1]!.seq
            yield fresh
          }
          continue
        }
        await new Promise<void>((resolve) => {
          sub.wake = resolve
        })
        sub.wake = undefined
      }
    } finally {
      signal.removeEventListener('abort', onAbort)
      this.subscribers.delete(sub)
    }
  }
}
