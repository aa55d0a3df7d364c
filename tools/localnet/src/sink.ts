import { randomBytes } from 'node:crypto'
import { Resolver } from 'node:dns/promises'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { authenticate } from 'mailauth'
import { SMTPServer } from 'smtp-server'
import { readJson, writeJson } from './state.ts'

// Every recipient's MX on the local network: it accepts mail for any domain, keeps each
// message (bounded, oldest dropped first) with the verdicts a receiving MTA would reach on
// it (mailauth, asking the local DNS), and answers the next recipient with a bounce when
// asked, so that a newcomer can watch the pool's feedback loop without the internet.

export type DkimVerdict = { domain: string; selector: string; algorithm: string; result: string; comment: string }

export type Verdicts = {
  dkim: DkimVerdict[]
  spf: { result: string; domain: string }
  dmarc: { result: string; domain: string; policy: string }
  /** Absent when the message carried no ARC set. */
  arc?: { result: string; instance: number }
  /** Why the verdicts could not be computed (then the lists above are empty). */
  error?: string
}

export type SinkEntry = {
  id: string
  receivedAt: string
  /** The envelope: empty for a null sender. */
  mailFrom: string
  rcptTo: string[]
  helo: string
  remoteAddress: string
  secure: boolean
  size: number
  subject: string
  from: string
  verdicts: Verdicts
  /** Reports the buttons sent about this message. */
  feedback: Array<{ kind: 'complaint' | 'bounce'; at: string; to: string; reply: string }>
}

export type NextReply = 'hard' | 'soft'

/** What the next recipient is answered (once), as a receiver would at SMTP time. */
export const REPLIES: Record<NextReply, { code: number; text: string }> = {
  hard: { code: 550, text: '5.1.1 The email account that you tried to reach does not exist (local network sink)' },
  soft: { code: 451, text: '4.2.0 Mailbox temporarily unavailable, try again later (local network sink)' },
}

export type SinkOptions = {
  dir: string
  /** The local DNS (`127.0.0.1:<port>`) the verdicts are computed with. */
  dnsAddress: string
  /** Name in the greeting. */
  hostname: string
  /** Messages kept; the oldest go first. */
  maxMessages?: number
  /** Bytes kept in all; the oldest go first. */
  maxBytes?: number
  /** Largest message accepted (SIZE); larger get 552. */
  maxMessageSize?: number
}

const ID = /^\d{13}-[0-9a-f]{8}$/

export class Sink {
  readonly hostname: string
  nextReply: NextReply | undefined
  private readonly dir: string
  private readonly resolver: Resolver
  private readonly maxMessages: number
  private readonly maxBytes: number
  private readonly maxMessageSize: number
  private server: SMTPServer | undefined
  private boundPort = 0
  private waiters: Array<() => void> = []

  constructor(opts: SinkOptions) {
    this.dir = opts.dir
    this.hostname = opts.hostname
    this.maxMessages = opts.maxMessages ?? 500
    this.maxBytes = opts.maxBytes ?? 100 * 1024 * 1024
    this.maxMessageSize = opts.maxMessageSize ?? 10 * 1024 * 1024
    this.resolver = new Resolver({ timeout: 2000, tries: 1 })
    this.resolver.setServers([opts.dnsAddress])
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
  }

  get port(): number {
    if (!this.boundPort) throw new Error('the sink is not started')
    return this.boundPort
  }

  async start(port = 0): Promise<number> {
    const server = new SMTPServer({
      name: this.hostname,
      banner: 'local network sink: every domain delivered here is kept, nothing goes further',
      authOptional: true,
      disabledCommands: ['AUTH'],
      logger: false,
      size: this.maxMessageSize,
      onRcptTo: (_address, _session, cb) => {
        const next = this.nextReply
        if (!next) return cb()
        this.nextReply = undefined
        const reply = REPLIES[next]
        cb(Object.assign(new Error(reply.text), { responseCode: reply.code }))
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = []
        let size = 0
        stream.on('data', (c: Buffer) => {
          size += c.length
          if (size <= this.maxMessageSize) chunks.push(c)
        })
        stream.on('end', () => {
          if ((stream as unknown as { sizeExceeded?: boolean }).sizeExceeded || size > this.maxMessageSize) {
            cb(Object.assign(new Error('5.3.4 Message too big'), { responseCode: 552 }))
            return
          }
          const raw = Buffer.concat(chunks)
          this.keep(raw, {
            mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            rcptTo: session.envelope.rcptTo.map((r) => r.address.toLowerCase()),
            helo: session.hostNameAppearsAs ?? '',
            remoteAddress: session.remoteAddress.replace(/^::ffff:/, ''),
            secure: session.secure,
          }).then(
            (entry) => cb(null, `2.0.0 kept as ${entry.id}`),
            (err: Error) => cb(Object.assign(new Error(`4.3.0 not kept: ${err.message}`), { responseCode: 451 })),
          )
        })
      },
    })
    server.on('error', () => {})
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
    this.server = server
    this.boundPort = (server.server.address() as { port: number }).port
    return this.boundPort
  }

  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** Kept messages, newest first. */
  list(): SinkEntry[] {
    return this.ids()
      .reverse()
      .map((id) => readJson<SinkEntry | null>(join(this.dir, `${id}.json`), null))
      .filter((e): e is SinkEntry => e !== null)
  }

  get(id: string): SinkEntry | undefined {
    if (!ID.test(id)) return undefined
    return readJson<SinkEntry | undefined>(join(this.dir, `${id}.json`), undefined)
  }

  raw(id: string): Buffer | undefined {
    if (!ID.test(id) || !existsSync(join(this.dir, `${id}.eml`))) return undefined
    return readFileSync(join(this.dir, `${id}.eml`))
  }

  /** Records a report sent about a message (shown on its page). */
  noteFeedback(id: string, feedback: SinkEntry['feedback'][number]): void {
    const entry = this.get(id)
    if (!entry) return
    entry.feedback.push(feedback)
    writeJson(join(this.dir, `${id}.json`), entry, 0o600)
  }

  /** Resolves once a message arrives after this call (for tests and the CLI's `--wait`), or false after `ms`. */
  next(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        resolve(true)
      }
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done)
        resolve(false)
      }, ms)
      this.waiters.push(done)
    })
  }

  private ids(): string[] {
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -5))
      .filter((id) => ID.test(id))
      .sort()
  }

  private async keep(
    raw: Buffer,
    envelope: Pick<SinkEntry, 'mailFrom' | 'rcptTo' | 'helo' | 'remoteAddress' | 'secure'>,
  ): Promise<SinkEntry> {
    const id = `${Date.now()}-${randomBytes(4).toString('hex')}`
    const headers = headerBlock(raw)
    const entry: SinkEntry = {
      id,
      receivedAt: new Date().toISOString(),
      ...envelope,
      size: raw.length,
      subject: headerValue(headers, 'subject'),
      from: headerValue(headers, 'from'),
      verdicts: await this.verdicts(raw, envelope),
      feedback: [],
    }
    writeFileSync(join(this.dir, `${id}.eml`), raw, { mode: 0o600 })
    writeJson(join(this.dir, `${id}.json`), entry, 0o600)
    this.prune()
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
    return entry
  }

  /** As a receiving MTA: the connecting address, its HELO and MAIL FROM, DNS from the local server. */
  private async verdicts(raw: Buffer, envelope: { mailFrom: string; helo: string; remoteAddress: string }) {
    try {
      const result = await authenticate(raw, {
        ip: envelope.remoteAddress,
        helo: envelope.helo,
        sender: envelope.mailFrom,
        mta: this.hostname,
        resolver: (name: string, rr: string) => this.resolver.resolve(name, rr as 'TXT'),
      } as Parameters<typeof authenticate>[1])
      type Dkim = {
        signingDomain: string
        selector: string
        algo: string
        status: { result: string; comment?: string }
      }
      const verdicts: Verdicts = {
        dkim: ((result.dkim?.results ?? []) as Dkim[]).map((r) => ({
          domain: r.signingDomain ?? '',
          selector: r.selector ?? '',
          algorithm: r.algo ?? '',
          result: r.status?.result ?? 'none',
          comment: r.status?.comment ?? '',
        })),
        spf: {
          result: (result.spf as { status?: { result?: string } })?.status?.result ?? 'none',
          domain: (result.spf as { domain?: string })?.domain ?? '',
        },
        dmarc: {
          result: (result.dmarc as { status?: { result?: string } })?.status?.result ?? 'none',
          domain: (result.dmarc as { domain?: string })?.domain ?? '',
          policy: (result.dmarc as { policy?: string })?.policy ?? '',
        },
      }
      const arc = result.arc as { status?: { result?: string }; i?: number } | undefined
      if (arc?.status?.result && arc.status.result !== 'none')
        verdicts.arc = { result: arc.status.result, instance: arc.i ?? 0 }
      return verdicts
    } catch (err) {
      return {
        dkim: [],
        spf: { result: 'none', domain: '' },
        dmarc: { result: 'none', domain: '', policy: '' },
        error: (err as Error).message,
      }
    }
  }

  /** Drops the oldest messages past the count and byte bounds. */
  private prune(): void {
    const ids = this.ids()
    const sizes = ids.map((id) => {
      try {
        return statSync(join(this.dir, `${id}.eml`)).size
      } catch {
        return 0
      }
    })
    let total = sizes.reduce((a, b) => a + b, 0)
    let count = ids.length
    for (let i = 0; i < ids.length && (count > this.maxMessages || total > this.maxBytes); i++) {
      rmSync(join(this.dir, `${ids[i]}.eml`), { force: true })
      rmSync(join(this.dir, `${ids[i]}.json`), { force: true })
      count--
      total -= sizes[i]!
    }
  }
}

/** The message's header block (up to the first empty line), CRLF kept. */
export function headerBlock(raw: Buffer | string): string {
  const text = typeof raw === 'string' ? raw : raw.toString('utf8')
  const end = text.search(/\r?\n\r?\n/)
  return end < 0 ? text : text.slice(0, end)
}

/** The first header of that name, unfolded. */
export function headerValue(headers: string, name: string): string {
  const unfolded = headers.replace(/\r?\n[ \t]+/g, ' ')
  for (const line of unfolded.split(/\r?\n/)) {
    const colon = line.indexOf(':')
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name) return line.slice(colon + 1).trim()
  }
  return ''
}
