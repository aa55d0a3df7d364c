import { InvalidRequestError, type Server } from '@atproto/xrpc-server'
import { labelView, rowToLabel } from '../labels/rows.ts'
import { ConsumerTooSlowError, FutureCursorError, type LabelStream } from '../labels/stream.ts'

export type SubscriptionMetrics = { connected: () => void; closed: (reason: 'normal' | 'too_slow' | 'error') => void }

/**
 * com.atproto.label.subscribeLabels: one `#labels` frame per label change, `{ seq, labels }`.
 * From a cursor: replay, then live; without one: live only. A cursor past the newest seq
 * gets the FutureCursor error frame; a subscriber that falls too far behind gets
 * ConsumerTooSlow; both are followed by a close.
 */
export function registerSubscribeLabels(server: Server, stream: LabelStream, metrics: SubscriptionMetrics) {
  server.streamMethod('com.atproto.label.subscribeLabels', async function* ({ params, signal }) {
    const cursor = params.cursor as number | undefined
    metrics.connected()
    let reason: 'normal' | 'too_slow' | 'error' = 'normal'
    try {
      for await (const row of stream.subscribe(cursor, signal)) {
        yield { $type: 'com.atproto.label.subscribeLabels#labels', seq: row.seq, labels: [labelView(rowToLabel(row))] }
      }
    } catch (err) {
      if (err instanceof FutureCursorError) throw new InvalidRequestError(err.message, 'FutureCursor')
      if (err instanceof ConsumerTooSlowError) {
        reason = 'too_slow'
        throw new InvalidRequestError(err.message, 'ConsumerTooSlow')
      }
      reason = 'error'
      throw err
    } finally {
      metrics.closed(reason)
    }
  })
}
