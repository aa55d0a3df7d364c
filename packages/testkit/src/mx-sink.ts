import { setTimeout as sleep } from 'node:timers/promises'
import { SMTPServer, type SMTPServerSession } from 'smtp-server'

/** What a sink answers a recipient (at RCPT) or a message (after DATA): undefined accepts. */
export type SinkReply = { code: number; text: string } | undefined

/** One message a sink accepted: the envelope as the sending MTA gave it, and the raw bytes. */
export type SinkMessage = {
  /** Empty for the null sender of a bounce. */
  mailFrom: string
  /** Lower-cased, in the order the sender gave them. */
  rcptTo: string[]
  raw: string
  /** The sink's name: tells apart sinks that share a port on several addresses. */
  sink: string
  /** Whether the session had gone through STARTTLS. */
  secure: boolean
  /** Whether MAIL FROM carried REQUIRETLS (RFC 8689). */
  requireTls: boolean
  sessionId: string
}

export type MxSinkOptions = {
  name?: string
  /** Loopback address to listen on: sinks on 127.0.0.2, .3… can share one port, as MX hosts share port 25. */
  host?: string
  /** Advertised SIZE limit in bytes; none by default. */
  size?: number
  /** False keeps only the count, for runs too long to hold every message. */
  keep?: boolean
  /**
   * STARTTLS certificate and key (PEM); smtp-server's built-in self-signed pair by default.
   * `false` does not offer STARTTLS at all.
   */
  tls?: { cert: string; key: string } | false
  /** Advertise REQUIRETLS (RFC 8689) after STARTTLS; off by default, as on most MX hosts. */
  requireTls?: boolean
}

/**
 * A recipient's MX on loopback, built on smtp-server. STARTTLS is offered with smtp-server's
 * built-in self-signed test certificate unless the test gives one (or none: `tls: false`).
 * It keeps what it accepted, counts sessions (open, most open at once, per-session messages)
 * and answers as the test scripts it: per recipient, per message, after an optional delay.
 */
export class MxSink {
  readonly name: string
  readonly host: string
  readonly received: SinkMessage[] = []
  /** Messages accepted, whether kept or not. */
  count = 0
  open = 0
  maxOpen = 0
  sessions = 0
  /** Messages accepted per session id: shows how many each session carried. */
  readonly perSession = new Map<string, number>()
  /** Called on each RCPT, before DATA is accepted. */
  onRcpt: (to: string, session: SMTPServerSession) => SinkReply = () => undefined
  /** Called when DATA ends, with the first recipient (the relay sends one per message). */
  onMessage: (to: string) => SinkReply = () => undefined
  /** Milliseconds to hold the reply to DATA, keeping sessions busy. */
  dataDelayMs = 0
  private readonly size: number | undefined
  private readonly keep: boolean
  private readonly tls: MxSinkOptions['tls']
  private readonly requireTls: boolean
  private server: SMTPServer | undefined
  private boundPort = 0
  private waiters: Array<{ n: number; resolve: () => void }> = []

  constructor(opts: MxSinkOptions = {}) {
    this.name = opts.name ?? 'mx'
    this.host = opts.host ?? '127.0.0.1'
    this.size = opts.size
    this.keep = opts.keep ?? true
    this.tls = opts.tls
    this.requireTls = opts.requireTls ?? false
  }

  get port(): number {
    if (!this.boundPort) throw new Error('MxSink is not started')
    return this.boundPort
  }

  /** Listens on `port` (0: any free one) at the sink's host; resolves to the port bound. */
  async start(port = 0): Promise<number> {
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH'],
      logger: false,
      ...(this.size === undefined ? {} : { size: this.size }),
      ...(this.tls === false ? { hideSTARTTLS: true } : this.tls ? { cert: this.tls.cert, key: this.tls.key } : {}),
      hideREQUIRETLS: !this.requireTls,
      onConnect: (_session, cb) => {
        this.open++
        this.sessions++
        this.maxOpen = Math.max(this.maxOpen, this.open)
        cb()
      },
      onClose: () => {
        this.open--
      },
      onRcptTo: (address, session, cb) => {
        const reply = this.onRcpt(address.address.toLowerCase(), session)
        if (reply) cb(Object.assign(new Error(reply.text), { responseCode: reply.code }))
        else cb()
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = []
        stream.on('data', (c: Buffer) => {
          if (this.keep) chunks.push(c)
        })
        stream.on('end', async () => {
          if (this.dataDelayMs) await sleep(this.dataDelayMs)
          const rcptTo = session.envelope.rcptTo.map((r) => r.address.toLowerCase())
          const reply = this.onMessage(rcptTo[0] ?? '')
          if (reply) {
            cb(Object.assign(new Error(reply.text), { responseCode: reply.code }))
            return
          }
          this.perSession.set(session.id, (this.perSession.get(session.id) ?? 0) + 1)
          if (this.keep) {
            this.received.push({
              mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              rcptTo,
              raw: Buffer.concat(chunks).toString('utf8'),
              sink: this.name,
              secure: session.secure,
              requireTls: session.envelope.requireTLS === true,
              sessionId: session.id,
            })
          }
          this.count++
          this.waiters = this.waiters.filter((w) => {
            if (this.count < w.n) return true
            w.resolve()
            return false
          })
          cb()
        })
      },
    })
    // A client that drops its connection must not fail the test process.
    server.on('error', () => {})
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, this.host, () => resolve())
    })
    this.server = server
    const address = server.server.address()
    this.boundPort = typeof address === 'object' && address ? address.port : port
    return this.boundPort
  }

  /** Messages kept so far that were addressed to `address`. */
  to(address: string): SinkMessage[] {
    return this.received.filter((r) => r.rcptTo.includes(address))
  }

  /** Resolves true once `n` messages were accepted in all, false after `timeoutMs`. */
  reach(n: number, timeoutMs: number): Promise<boolean> {
    if (this.count >= n) return Promise.resolve(true)
    return new Promise((resolve) => {
      const waiter = {
        n,
        resolve: () => {
          clearTimeout(timer)
          resolve(true)
        },
      }
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter)
        resolve(false)
      }, timeoutMs)
      this.waiters.push(waiter)
    })
  }

  async close(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
