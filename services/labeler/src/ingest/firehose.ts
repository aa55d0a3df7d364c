import { errorFields, type Logger } from '@atmos/runtime'
import { IdResolver } from '@atproto/identity'
import { type Event, Firehose } from '@atproto/sync'
import type { IngestEvent } from './events.ts'
import type { SourceHandlers } from './jetstream.ts'
import { observeFirehose } from './observed-subscription.ts'

export type FirehoseOptions = {
  /** The PDS or relay host, e.g. wss://bsky.network or http://127.0.0.1:2583 */
  service: string
  collections: string[]
  plcUrl: string
  reconnectMaxMs: number
}

/**
 * An atproto repo firehose (com.atproto.sync.subscribeRepos) as an ingest source: what a
 * single PDS offers. @atproto/sync checks each commit's signature against the repo's key
 * before we see it. The cursor is the firehose seq, resumed exactly (no rewind needed).
 */
export class FirehoseSource {
  private readonly opts: FirehoseOptions
  private readonly handlers: SourceHandlers
  private readonly logger: Logger
  private firehose: Firehose | undefined
  private stopped = false
  private restartTimer: NodeJS.Timeout | undefined
  private failures = 0
  private lastError: string | undefined
  connected = false

  constructor(opts: FirehoseOptions, handlers: SourceHandlers, logger: Logger) {
    this.opts = opts
    this.handlers = handlers
    this.logger = logger
  }

  start(): void {
    this.stopped = false
    const local = new URL(this.opts.plcUrl).protocol === 'http:'
    const idResolver = new IdResolver({
      plcUrl: this.opts.plcUrl,
      // A local PLC over http is refused by the default SSRF-guarded fetch; only then is
      // the plain one used. Handles are not resolved (we verify domain control ourselves).
      ...(local ? { fetch: globalThis.fetch } : {}),
    })
    const firehose = new Firehose({
      idResolver,
      service: this.opts.service,
      filterCollections: this.opts.collections,
      unauthenticatedHandles: true,
      excludeSync: true,
      maxReconnectSeconds: Math.ceil(this.opts.reconnectMaxMs / 1000),
      getCursor: () => this.handlers.resumeFrom(),
      handleEvent: async (evt) => {
        const event = normalise(evt)
        if (event) await this.handlers.onEvent(event)
      },
      onError: (err) => this.onError(err),
    })
    // Connected means the socket is open, not that a commit came: a PDS may say nothing
    // for hours. A firehose replaced by restart() has its own hooks silenced.
    observeFirehose(firehose, {
      onConnect: () => {
        if (this.firehose !== firehose) return
        this.failures = 0
        this.setConnected(true)
        this.logger.info({ firehose: this.opts.service }, 'firehose connected')
      },
      onDisconnect: () => this.firehose === firehose && this.setConnected(false),
      onRetry: (err) => this.firehose === firehose && this.connectionError(err),
    })
    this.firehose = firehose
    void firehose.start()
    this.logger.info({ firehose: this.opts.service }, 'firehose subscribed')
  }

  private onError(err: Error) {
    if (err.name === 'FirehoseHandlerError') {
      // Applying an event failed (Postgres down…): the library would carry on with the
      // next one and the cursor would pass this event by. Restart from the saved cursor.
      this.logger.error(errorFields(err), 'ingest failed; restarting the firehose from the cursor')
      void this.restart()
      return
    }
    if (err.name === 'FirehoseParseError' || err.name === 'FirehoseValidationError') {
      this.handlers.onMalformed(`${err.name}: ${err.message}`)
      return
    }
    this.connectionError(err)
  }

  private connectionError(err: unknown) {
    this.setConnected(false)
    // One line per outage (or per new reason), not one per reconnection attempt.
    const message = err instanceof Error ? err.message : String(err)
    if (message === this.lastError) return
    this.lastError = message
    this.logger.warn({ firehose: this.opts.service, ...errorFields(err) }, 'firehose connection error; retrying')
  }

  private setConnected(up: boolean) {
    if (up) this.lastError = undefined
    this.connected = up
    this.handlers.onConnection?.(up)
  }

  private async restart() {
    const old = this.firehose
    this.firehose = undefined
    this.setConnected(false)
    await old?.destroy().catch(() => {})
    if (this.stopped) return
    this.failures++
    const delay = Math.min(this.opts.reconnectMaxMs, 500 * 2 ** Math.min(this.failures, 8))
    this.restartTimer = setTimeout(() => !this.stopped && this.start(), delay)
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.restartTimer)
    await this.firehose?.destroy().catch(() => {})
    this.firehose = undefined
  }
}

function normalise(evt: Event): IngestEvent | undefined {
  switch (evt.event) {
    case 'create':
    case 'update':
      return {
        kind: 'record',
        did: evt.did,
        collection: evt.collection,
        rkey: evt.rkey,
        cid: evt.cid.toString(),
        record: evt.record,
        cursor: evt.seq,
        time: evt.time,
      }
    case 'delete':
      return {
        kind: 'delete',
        did: evt.did,
        collection: evt.collection,
        rkey: evt.rkey,
        cursor: evt.seq,
        time: evt.time,
      }
    case 'identity':
      return { kind: 'identity', did: evt.did, handle: evt.handle, cursor: evt.seq, time: evt.time }
    case 'account':
      return {
        kind: 'account',
        did: evt.did,
        active: evt.active,
        status: evt.status,
        cursor: evt.seq,
        time: evt.time,
      }
    default:
      return undefined
  }
}
