import type { Db } from '@atmos/db'
import { labels } from '@atmos/db'
import { labelWireCbor } from '@atmos/labels'
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

type RawLabelRow = Omit<LabelRow, 'seq' | 'signingKeyId' | 'createdAt' | 'wireCbor'> & {
  seq: string
  signing_key_id: number
  wire_cbor: Buffer | null
}

/** Replay pages read at once per subscriber (each holds a pool connection while it runs). */
const REPLAY_AHEAD = 2

/** A replay row: the stored label bytes, or (rows stored before wire_cbor) what encodes them. */
type RawReplayRow = { seq: string; wire_cbor: Buffer | null } & Partial<
  Pick<LabelRow, 'ver' | 'src' | 'uri' | 'cid' | 'val' | 'neg' | 'cts' | 'exp' | 'sig'>
>

/** One label event as subscribeLabels frames it: its seq and the label in DAG-CBOR. */
export type StreamLabel = { seq: number; cbor: Uint8Array }

type Subscriber = {
  queue: StreamLabel[]
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

  /** Up to pageSize whole rows after `after`, in seq order: new labels, for the change listeners too. */
  private async rowsAfter(after: number): Promise<LabelRow[]> {
    const rows = await this.db.$client<RawLabelRow[]>`
      select seq::int8::text as seq, ver, src, uri, cid, val, neg, cts, exp, sig, signing_key_id, reason, wire_cbor
      from labels where labels.seq > ${after} order by labels.seq limit ${this.pageSize}`
    return rows.map(
      ({ signing_key_id, wire_cbor, ...r }) =>
        ({
          ...r,
          seq: Number(r.seq),
          signingKeyId: signing_key_id,
          wireCbor: wire_cbor,
          createdAt: new Date(0),
        }) as LabelRow,
    )
  }

  /**
   * Up to pageSize labels after `after` for a replay, the hot path of a subscriber from an
   * old cursor: only seq and the stored DAG-CBOR, so that Postgres sends and postgres.js
   * parses two columns a row; the columns a label is encoded from come only for rows
   * stored before wire_cbor existed.
   */
  private async replayAfter(after: number, upTo = Number.MAX_SAFE_INTEGER): Promise<StreamLabel[]> {
    const rows = await this.db.$client<RawReplayRow[]>`
      select seq::int8::text as seq, wire_cbor,
        case when wire_cbor is null then ver end as ver, case when wire_cbor is null then src end as src,
        case when wire_cbor is null then uri end as uri, case when wire_cbor is null then cid end as cid,
        case when wire_cbor is null then val end as val, case when wire_cbor is null then neg end as neg,
        case when wire_cbor is null then cts end as cts, case when wire_cbor is null then exp end as exp,
        case when wire_cbor is null then sig end as sig
      from labels where labels.seq > ${after} and labels.seq <= ${upTo} order by labels.seq limit ${this.pageSize}`
    const out = new Array<StreamLabel>(rows.length)
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!
      out[i] = { seq: Number(r.seq), cbor: r.wire_cbor ?? labelWireCbor(r as Required<RawReplayRow>) }
    }
    return out
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
          if (this.subscribers.size) {
            const events = rows.map(streamLabel)
            for (const sub of this.subscribers) this.deliver(sub, events)
          }
          if (rows.length < this.pageSize) break
        }
      } while (this.pollAgain)
    })()
      .catch((err) => this.logger.error({ err }, 'label stream poll failed'))
      .finally(() => {
        this.polling = undefined
      })
  }

  private deliver(sub: Subscriber, rows: StreamLabel[]) {
    if (sub.tooSlow) return
    if (sub.queue.length + rows.length > this.maxBuffer) {
      sub.tooSlow = true
      sub.queue.length = 0
    } else sub.queue.push(...rows)
    sub.wake?.()
  }

  /** Every label after `cursor`, one at a time (see subscribeBatches). */
  async *subscribe(cursor: number | undefined, signal: AbortSignal): AsyncGenerator<StreamLabel> {
    for await (const batch of this.subscribeBatches(cursor, signal)) yield* batch
  }

  /**
   * Every label after `cursor` in seq order, then live ones; without a cursor, live ones
   * only. The subscriber registers for live events before the backfill starts and the
   * overlap is dropped by seq, so nothing committed during the backfill is lost. Rows come
   * in batches (a backfill page, or whatever arrived live) so that a sender can write
   * them to the socket in one go.
   */
  async *subscribeBatches(cursor: number | undefined, signal: AbortSignal): AsyncGenerator<StreamLabel[]> {
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
        // Up to the newest label now, pages are seq ranges of pageSize (at most pageSize rows,
        // as seq is unique) and need no previous page to start: REPLAY_AHEAD of them are read
        // at once, so that Postgres reads the next ones on the other core while this one is
        // framed and written. Every row up to `end` committed before it was read (the writer
        // lock makes seq order visibility order), so the ranges hold all of them.
        const end = await this.maxSeq()
        const ahead: Array<Promise<StreamLabel[]>> = []
        let from = last
        const readAhead = () => {
          while (ahead.length < REPLAY_AHEAD && from < end) {
            ahead.push(this.replayAfter(from, Math.min(from + this.pageSize, end)))
            from += this.pageSize
          }
        }
        let next: Promise<StreamLabel[]> | undefined
        try {
          readAhead()
          while (ahead.length) {
            const rows = await ahead.shift()!
            if (signal.aborted) return
            readAhead()
            if (rows.length) {
              last = rows[rows.length - 1]!.seq
              yield rows
            }
          }
          last = Math.max(last, end)
          // Then what committed since, page after page until a short one (the next page is
          // asked for before this one is handed over, as above); the live queue takes over.
          next = this.replayAfter(last)
          while (next) {
            const rows: StreamLabel[] = await next
            next = undefined
            if (signal.aborted) return
            if (rows.length === this.pageSize) next = this.replayAfter(rows[rows.length - 1]!.seq)
            if (rows.length) {
              last = rows[rows.length - 1]!.seq
              yield rows
            }
          }
        } finally {
          // Reads the subscriber left before taking them: their outcome no longer matters.
          next?.catch(() => {})
          for (const page of ahead) page.catch(() => {})
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

/** A new row as subscribers get it: its stored bytes, or encoded now for a row without them. */
function streamLabel(row: LabelRow): StreamLabel {
  return { seq: row.seq, cbor: row.wireCbor ?? labelWireCbor(row) }
}
