import type { Firehose } from '@atproto/sync'
import { websocket } from '@atproto/ws-client'
import { ensureChunkIsMessage, Subscription } from '@atproto/xrpc-server'

export type ConnectionHooks = {
  /** The socket is open (each connection, the first included). */
  onConnect: () => void
  /** The open socket closed, however: one per onConnect. */
  onDisconnect: () => void
  /** A dial or a connection failed and another attempt follows after a backoff. */
  onRetry: (error: unknown) => void
}

/**
 * xrpc-server's Subscription, which @atproto/sync's Firehose reads, with its socket's
 * life reported. The original says nothing when its socket opens and swallows every
 * failure it retries: a quiet PDS would look down until its first commit, and a PDS gone
 * away would look connected for as long as it stays away. The URL, the frame decoding,
 * the validation and the reconnect policy are the original's (its options are reused).
 */
export class ObservedSubscription<T> extends Subscription<T> {
  private readonly hooks: ConnectionHooks

  constructor(opts: Subscription<T>['opts'], hooks: ConnectionHooks) {
    super(opts)
    this.hooks = hooks
  }

  override async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    const { opts, hooks } = this
    const ws = websocket(
      async () => {
        const query = new URLSearchParams()
        for (const [key, value] of Object.entries((await opts.getParams?.()) ?? {})) {
          if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
            query.set(key, String(value))
          }
        }
        return `${opts.service}/xrpc/${opts.method}?${query}`
      },
      {
        dataMode: 'binary',
        headers: opts.headers,
        maxReconnectSeconds: opts.maxReconnectSeconds,
        heartbeat: opts.heartbeatIntervalMs ? { intervalMs: opts.heartbeatIntervalMs } : {},
        signal: opts.signal,
        onConnect: () => hooks.onConnect(),
        onDisconnect: () => hooks.onDisconnect(),
        onReconnect: (error) => hooks.onRetry(error),
      },
    )
    for await (const chunk of ws) {
      const message = ensureChunkIsMessage(chunk)
      const t = message.header.t
      const body = message.body
      const typed = !isPlainObject(body)
        ? undefined
        : t === undefined
          ? body
          : { ...body, $type: t.startsWith('#') ? opts.method + t : t }
      const result = opts.validate(typed)
      if (result !== undefined) yield result
    }
  }
}

/**
 * Puts an ObservedSubscription in place of the Firehose's own. That one is a private
 * field (`sub`, @atproto/sync 0.4.11): an upgrade that moves it fails here, at start,
 * rather than leaving the connected gauge quietly wrong.
 */
export function observeFirehose(firehose: Firehose, hooks: ConnectionHooks): void {
  const holder = firehose as unknown as { sub?: unknown }
  if (!(holder.sub instanceof Subscription)) {
    throw new Error("@atproto/sync's Firehose no longer keeps its Subscription in `sub`: update observeFirehose")
  }
  holder.sub = new ObservedSubscription(holder.sub.opts, hooks)
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}
