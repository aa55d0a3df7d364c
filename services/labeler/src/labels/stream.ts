import type { Db } from '@atmos/db'
import { labels } from '@atmos/db'
import type { Logger } from '@atmos/runtime'
import { asc, gt, max } from 'drizzle-orm'
import type { LabelRow } from './rows.ts'
import { LABELS_CHANNEL } from './writer.ts'

export class FutureCursorError extends Error {
  override name = 'FutureCursorError'
}
export class ConsumerTooSlowError extends Error {
  override name = 'ConsumerTooSlowError'
}

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
  private readonly changeListeners: Array<() => void> = []

  constructor(db: Db, logger: Logger, opts: { maxBuffer: number; pageSize: number }) {
    this.db = db
    this.logger = logger
    this.maxBuffer = opts.maxBuffer
    this.pageSize = opts.pageSize
  }

  /** Called (in this process) after new labels were read, e.g. to drop cached pages. */
  onChange(listener: () => void): void {
    this.changeListeners.push(listener)
  }

  get subscriberCount(): number {
    return this.subscribers.size
  }

  async start(): Promise<void> {
    this.lastSeq = await this.maxSeq()
    const listener = await this.db.$client.listen(
      LABELS_CHANNEL,
      () => this.poll(),
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

  async maxSeq(): Promise<number> {
    const [row] = await this.db.select({ seq: max(labels.seq) }).from(labels)
    return Number(row?.seq ?? 0)
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
          const rows = await this.db
            .select()
            .from(labels)
            .where(gt(labels.seq, this.lastSeq))
            .orderBy(asc(labels.seq))
            .limit(this.pageSize)
          if (!rows.length) break
          this.lastSeq = rows[rows.length - 1]!.seq
          for (const listener of this.changeListeners) listener()
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

  /**
   * Every label after `cursor` in seq order, then live ones; without a cursor, live ones
   * only. The subscriber registers for live events before the backfill starts and the
   * overlap is dropped by seq, so nothing committed during the backfill is lost.
   */
  async *subscribe(cursor: number | undefined, signal: AbortSignal): AsyncGenerator<LabelRow> {
    const sub: Subscriber = { queue: [], wake: undefined, tooSlow: false }
    if (cursor !== undefined && cursor > (await this.maxSeq())) {
      throw new FutureCursorError('Cursor in the future.')
    }
    this.subscribers.add(sub)
    const onAbort = () => sub.wake?.()
    signal.addEventListener('abort', onAbort)
    try {
      let last = cursor ?? Number.MAX_SAFE_INTEGER
      if (cursor !== undefined) {
        for (;;) {
          const rows = await this.db
            .select()
            .from(labels)
            .where(gt(labels.seq, last))
            .orderBy(asc(labels.seq))
            .limit(this.pageSize)
          for (const row of rows) {
            if (signal.aborted) return
            yield row
            last = row.seq
          }
          if (rows.length < this.pageSize) break
        }
      }
      while (!signal.aborted) {
        if (sub.tooSlow) throw new ConsumerTooSlowError('Stream consumer too slow')
        const row = sub.queue.shift()
        if (row) {
          if (cursor === undefined || row.seq > last) {
            last = row.seq
            yield row
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
