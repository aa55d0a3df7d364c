import { errorFields, type Logger, retryLogLevel } from '@atmos/runtime'
import WebSocket from 'ws'
import { type IngestEvent, parseJetstreamFrame } from './events.ts'

export type SourceHandlers = {
  /** Called once per event, one at a time, in order; the source waits for it. */
  onEvent: (event: IngestEvent) => Promise<void>
  /** A frame that could not be used; `cursor` when the frame still told its time. */
  onMalformed: (reason: string, cursor?: number) => void
  /** Where to resume (time_us) on each (re)connect; undefined: live only. */
  resumeFrom: () => Promise<number | undefined>
  /** The source connected (true) or went away (false), for the connected gauge and the lag. */
  onConnection?: (up: boolean) => void
}

export type JetstreamOptions = {
  url: string
  collections: string[]
  /** Microseconds to rewind the cursor on reconnect, so nothing at the edge is missed. */
  rewindUs: number
  reconnectMinMs: number
  reconnectMaxMs: number
  /** Events buffered before the socket is paused. */
  highWaterMark: number
}

/**
 * A Jetstream subscription that survives disconnects: it reconnects with exponential
 * backoff and jitter, resuming from the persisted cursor minus a few seconds (events in
 * the overlap are applied idempotently). Events are handed over strictly in order; the
 * socket is paused while the handler falls behind.
 */
export class JetstreamSource {
  private readonly opts: JetstreamOptions
  private readonly handlers: SourceHandlers
  private readonly logger: Logger
  private socket: WebSocket | undefined
  private stopped = false
  private queue: string[] = []
  private draining: Promise<void> | undefined
  private reconnectTimer: NodeJS.Timeout | undefined
  private failures = 0
  /** The error last logged: an outage is one line when it starts, not one per retry. */
  private lastError: string | undefined
  connected = false

  constructor(opts: JetstreamOptions, handlers: SourceHandlers, logger: Logger) {
    this.opts = opts
    this.handlers = handlers
    this.logger = logger
  }

  start(): void {
    this.stopped = false
    void this.connect()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.reconnectTimer)
    this.socket?.terminate()
    this.queue = []
    await this.draining
  }

  private async connect(): Promise<void> {
    if (this.stopped) return
    let cursor: number | undefined
    try {
      const saved = await this.handlers.resumeFrom()
      cursor = saved === undefined ? undefined : Math.max(0, saved - this.opts.rewindUs)
    } catch (err) {
      this.logger[retryLogLevel(err)](errorFields(err), 'cannot read the ingest cursor; retrying')
      return this.scheduleReconnect()
    }
    const url = new URL(this.opts.url)
    for (const c of this.opts.collections) url.searchParams.append('wantedCollections', c)
    if (cursor !== undefined) url.searchParams.set('cursor', String(cursor))
    const socket = new WebSocket(url)
    this.socket = socket
    socket.on('open', () => {
      this.connected = true
      this.handlers.onConnection?.(true)
      this.failures = 0
      this.lastError = undefined
      this.logger.info({ url: this.opts.url, cursor }, 'jetstream connected')
    })
    socket.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      if (isBinary) return this.handlers.onMalformed('binary frame (Jetstream sends JSON text)')
      this.queue.push(data.toString())
      if (this.queue.length >= this.opts.highWaterMark) socket.pause()
      this.drain()
    })
    socket.on('error', (err) => {
      if (err.message === this.lastError) return
      this.lastError = err.message
      this.logger.warn({ url: this.opts.url, err: err.message }, 'jetstream connection error; retrying')
    })
    socket.on('close', () => {
      this.connected = false
      this.handlers.onConnection?.(false)
      if (this.socket === socket) this.socket = undefined
      // Wait for what was received to be applied, so the resume cursor is current.
      void (this.draining ?? Promise.resolve()).then(() => this.scheduleReconnect())
    })
  }

  private scheduleReconnect() {
    if (this.stopped) return
    this.failures++
    const base = Math.min(this.opts.reconnectMaxMs, this.opts.reconnectMinMs * 2 ** (this.failures - 1))
    const delay = Math.round(base / 2 + Math.random() * (base / 2))
    this.logger.debug({ inMs: delay }, 'jetstream reconnecting')
    this.reconnectTimer = setTimeout(() => void this.connect(), delay)
  }

  private drain() {
    if (this.draining) return
    this.draining = (async () => {
      while (this.queue.length && !this.stopped) {
        const text = this.queue.shift() as string
        const parsed = parseJetstreamFrame(text)
        if (!parsed.ok) this.handlers.onMalformed(parsed.reason, parsed.cursor)
        else {
          try {
            await this.handlers.onEvent(parsed.event)
          } catch (err) {
            // Postgres is down or similar: drop the connection and replay from the cursor.
            this.logger.error(errorFields(err), 'ingest failed; reconnecting from the cursor')
            this.queue = []
            this.socket?.terminate()
            break
          }
        }
        if (this.socket?.isPaused && this.queue.length < this.opts.highWaterMark / 4) this.socket.resume()
      }
    })().finally(() => {
      this.draining = undefined
      if (this.queue.length && !this.stopped) this.drain()
    })
  }
}
