import type { Server as HttpServer, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { encodeErrorFrame } from '@atmos/labels'
import type { Logger } from '@atmos/runtime'
import { type WebSocket, WebSocketServer } from 'ws'
import { ConsumerTooSlowError, FutureCursorError, type LabelStream } from '../labels/stream.ts'
import { labelMessages } from './websocket-batch.ts'

export const SUBSCRIBE_LABELS_PATH = '/xrpc/com.atproto.label.subscribeLabels'

/** Above this many bytes queued in the socket, the sender waits for the kernel to take them. */
const SOCKET_HIGH_WATER = 1 << 20
/** WebSocket close code for a policy violation, as atproto event streams use for error frames. */
const CLOSE_POLICY = 1008

export type SubscriptionMetrics = { connected: () => void; closed: (reason: 'normal' | 'too_slow' | 'error') => void }

/**
 * com.atproto.label.subscribeLabels, per the atproto event-stream spec: each binary
 * message a DAG-CBOR header `{op: 1, t: "#labels"}` and body `{seq, labels}`; errors an
 * `{op: -1}` header and `{error, message}` body, then a close. From a cursor: replay,
 * then live; without one: live only.
 *
 * Served on the HTTP server's upgrade event rather than through xrpc-server's stream
 * server, which awaits the socket after every frame (about 17 000 frames/s here); this
 * writes frames as fast as the socket takes them and waits only when a megabyte is
 * queued, so a replay runs at the database's pace and a slow reader backs up into its
 * bounded queue in LabelStream until ConsumerTooSlow.
 */
export class SubscribeLabelsServer {
  // No permessage-deflate: label batches are written to the socket as ready-made frames
  // (labelMessages), which only holds while ws's sender never queues (it does only to compress).
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024, perMessageDeflate: false })
  private readonly stream: LabelStream
  private readonly metrics: SubscriptionMetrics
  private readonly logger: Logger

  constructor(stream: LabelStream, metrics: SubscriptionMetrics, logger: Logger) {
    this.stream = stream
    this.metrics = metrics
    this.logger = logger
  }

  /** Takes the upgrade if it is for subscribeLabels; returns false otherwise. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname !== SUBSCRIBE_LABELS_PATH) return false
    this.wss.handleUpgrade(req, socket, head, (ws) => void this.serve(ws, url.searchParams))
    return true
  }

  attach(http: HttpServer): void {
    http.on('upgrade', (req, socket, head) => {
      if (!this.handleUpgrade(req, socket, head)) socket.end('HTTP/1.1 404 Not Found\r\n\r\n')
    })
  }

  closeAll(): void {
    for (const ws of this.wss.clients) ws.close(1001, 'server shutting down')
  }

  private async serve(ws: WebSocket, params: URLSearchParams): Promise<void> {
    const ac = new AbortController()
    ws.on('close', () => ac.abort())
    ws.on('error', () => ac.abort())
    // Clients only listen; whatever they send is ignored.
    ws.on('message', () => {})
    this.metrics.connected()
    let reason: 'normal' | 'too_slow' | 'error' = 'normal'
    try {
      const cursorParam = params.get('cursor')
      let cursor: number | undefined
      if (cursorParam !== null) {
        if (!/^\d{1,15}$/.test(cursorParam)) {
          return fail(ws, 'InvalidRequest', 'cursor must be a non-negative integer')
        }
        cursor = Number(cursorParam)
      }
      const socket = (ws as unknown as { _socket: Duplex })._socket
      for await (const batch of this.stream.subscribeBatches(cursor, ac.signal)) {
        if (ws.readyState !== ws.OPEN) break
        // The batch's WebSocket messages, built in one Buffer from the stored label bytes,
        // in one write; the socket's queue is what bufferedAmount counts, so backpressure
        // (and, behind it, ConsumerTooSlow in the stream) works as with ws.send.
        socket.write(labelMessages(batch))
        if (ws.bufferedAmount >= SOCKET_HIGH_WATER) await drained(socket)
      }
    } catch (err) {
      if (err instanceof FutureCursorError) return fail(ws, 'FutureCursor', err.message)
      if (err instanceof ConsumerTooSlowError) {
        reason = 'too_slow'
        return fail(ws, 'ConsumerTooSlow', err.message)
      }
      reason = 'error'
      this.logger.error({ err }, 'subscribeLabels failed')
      return fail(ws, 'InternalServerError', 'Internal Server Error')
    } finally {
      this.metrics.closed(reason)
    }
  }
}

/** Resolves when the socket has written out what it holds (or is gone). */
function drained(socket: Duplex): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done)
      socket.off('close', done)
      resolve()
    }
    socket.once('drain', done)
    socket.once('close', done)
  })
}

function fail(ws: WebSocket, error: string, message: string) {
  if (ws.readyState !== ws.OPEN) return
  ws.send(encodeErrorFrame(error, message), () => ws.close(CLOSE_POLICY, error))
}
