import { isIP } from 'node:net'
import type { SmtpReply } from '@atmos/mail-feedback'
import SMTPConnection from 'nodemailer/lib/smtp-connection'

export type MxConnectionOptions = {
  port: number
  heloName: string
  connectTimeoutMs: number
  greetingTimeoutMs: number
  socketTimeoutMs: number
}

/** What one message's transaction came to: a reply from the MX, or no reply at all. */
export type SendResult =
  | { kind: 'reply'; reply: SmtpReply; response: string }
  | { kind: 'transport'; code: string; reason: string; retryable: boolean }

type NodemailerError = Error & { code?: string; responseCode?: number; response?: string }

/** `550-5.1.1 first line\n550 5.1.1 second` → code 550, enhanced 5.1.1, the text of every line. */
export function parseReply(response: string): SmtpReply {
  const lines = response.split(/\r?\n/).filter(Boolean)
  const code = Number(/^(\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0)
  const enhanced = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(lines[0] ?? '')?.[1]
  const text = lines
    .map((l) => l.replace(/^\d{3}[ -]?/, '').replace(/^[245]\.\d{1,3}\.\d{1,3}\s*/, ''))
    .join(' ')
    .trim()
  return enhanced ? { code, enhanced, text } : { code, text }
}

/**
 * One SMTP session to one MX address, driven through nodemailer's SMTPConnection (the
 * client its SMTP transport uses): the relay pools sessions itself, because each must hold
 * a site slot in Redis for exactly as long as its socket is open. STARTTLS is used when
 * offered, without requiring a valid certificate (opportunistic TLS, RFC 7435); a failed
 * handshake is retried in plain text.
 */
export class MxConnection {
  readonly hostName: string
  readonly address: string
  /** Resolves once the socket is closed, whoever closed it. */
  readonly ended: Promise<void>
  messages = 0
  private readonly connection: SMTPConnection
  private closed = false

  private constructor(connection: SMTPConnection, hostName: string, address: string) {
    this.connection = connection
    this.hostName = hostName
    this.address = address
    this.ended = new Promise((resolve) => {
      connection.once('end', () => {
        this.closed = true
        resolve()
      })
    })
    // Errors outside a command (the peer dropping an idle session) surface as 'end'.
    connection.on('error', () => {})
  }

  get isOpen(): boolean {
    return !this.closed
  }

  static async open(hostName: string, address: string, opts: MxConnectionOptions): Promise<MxConnection> {
    try {
      return await MxConnection.connect(hostName, address, opts, false)
    } catch (err) {
      if ((err as NodemailerError).code !== 'ETLS') throw err
      return MxConnection.connect(hostName, address, opts, true)
    }
  }

  private static connect(
    hostName: string,
    address: string,
    opts: MxConnectionOptions,
    plain: boolean,
  ): Promise<MxConnection> {
    const servername = isIP(hostName) ? undefined : hostName
    const connection = new SMTPConnection({
      host: address,
      port: opts.port,
      servername,
      name: opts.heloName,
      ignoreTLS: plain,
      opportunisticTLS: true,
      tls: { rejectUnauthorized: false, servername },
      connectionTimeout: opts.connectTimeoutMs,
      greetingTimeout: opts.greetingTimeoutMs,
      socketTimeout: opts.socketTimeoutMs,
      socketCloseTimeout: 1000,
      logger: false,
    })
    const mx = new MxConnection(connection, hostName, address)
    return new Promise((resolve, reject) => {
      let settled = false
      const fail = (err: Error) => {
        if (settled) return
        settled = true
        connection.close()
        reject(err)
      }
      // SMTPConnection reports a failed connect through 'error' (or a bare 'end'), not its callback.
      connection.once('error', fail)
      void mx.ended.then(() =>
        fail(Object.assign(new Error('connection closed before the greeting'), { code: 'ECONNECTION' })),
      )
      connection.connect((err) => {
        if (err) return fail(err)
        if (settled) return
        settled = true
        connection.removeListener('error', fail)
        resolve(mx)
      })
    })
  }

  /** Sends one message to one recipient; never throws. */
  send(from: string, to: string, body: Buffer): Promise<SendResult> {
    const reused = this.messages > 0
    this.messages++
    return new Promise((resolve) => {
      this.connection.send({ from, to: [to], size: body.length, use8BitMime: true }, body, (err, info) => {
        if (!err) {
          resolve({ kind: 'reply', reply: parseReply(info?.response ?? '250'), response: info?.response ?? '' })
          return
        }
        const e = err as NodemailerError
        const rejected = (info as { rejectedErrors?: NodemailerError[] } | undefined)?.rejectedErrors?.[0]
        const response = e.response ?? rejected?.response
        if (response && /^\d{3}/.test(response)) {
          resolve({ kind: 'reply', reply: parseReply(response), response })
          return
        }
        const code = e.code ?? 'EUNKNOWN'
        // A reused session the peer had dropped while it sat idle: nothing of this message
        // went out, so it may go again at once over a fresh session.
        const retryable = reused && (code === 'ECONNECTION' || code === 'ESOCKET')
        resolve({ kind: 'transport', code, reason: e.message, retryable })
      })
    })
  }

  /** RSET after a refused message, so the session can carry the next one. */
  reset(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false)
    return new Promise((resolve) => this.connection.reset((err) => resolve(!err)))
  }

  /** QUIT, then waits (briefly) for the socket to close. */
  async quit(waitMs = 2000): Promise<void> {
    if (!this.closed) {
      try {
        this.connection.quit()
      } catch {
        this.connection.close()
      }
    }
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.ended, new Promise<void>((r) => (timer = setTimeout(r, waitMs)))])
    clearTimeout(timer)
    if (!this.closed) {
      this.connection.close()
      await this.ended
    }
  }
}
