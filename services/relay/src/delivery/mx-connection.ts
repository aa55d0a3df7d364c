import { isIP } from 'node:net'
import type { SecureContext, TLSSocket } from 'node:tls'
import type { SmtpReply } from '@atmos/mail-feedback'
import SMTPConnection from 'nodemailer/lib/smtp-connection'
import { daneVerify, presentedChain } from './tls/dane.ts'
import type { HostTls, TlsRecord } from './tls/policy.ts'

export type MxConnectionOptions = {
  port: number
  heloName: string
  connectTimeoutMs: number
  greetingTimeoutMs: number
  socketTimeoutMs: number
  /**
   * Built once with the CA certificates MX certificates are verified against (Node's own
   * plus any configured); absent: Node's own. One context for every session, not one each.
   */
  secureContext?: SecureContext | undefined
}

/** The opportunistic requirement: what a host with no policy gets. */
export const OPPORTUNISTIC: HostTls = {
  policy: 'opportunistic',
  verify: 'none',
  names: [],
  requireTls: false,
  key: 'none',
}

/** A session that opened but fell short of its host's TLS policy; it was closed before MAIL FROM. */
export class TlsPolicyError extends Error {
  readonly code = 'ETLSPOLICY'
  readonly tls: TlsRecord
  constructor(message: string, tls: TlsRecord) {
    super(message)
    this.tls = tls
  }
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
 * handshake is retried in plain text. A host under a policy (MTA-STS enforce, DANE) must
 * offer STARTTLS and a certificate that passes it, or the session is closed before any
 * message goes out, and never retried in plain text.
 */
export class MxConnection {
  readonly hostName: string
  readonly address: string
  /** Resolves once the socket is closed, whoever closed it. */
  readonly ended: Promise<void>
  /** The TLS the session runs under, as attempts over it record it. */
  tls: TlsRecord = { policy: 'opportunistic', verified: false }
  /** The requirement it was opened for: reused only for hosts with the same one. */
  tlsKey = 'none'
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

  static async open(
    hostName: string,
    address: string,
    opts: MxConnectionOptions,
    policy: HostTls = OPPORTUNISTIC,
  ): Promise<MxConnection> {
    let mx: MxConnection
    let retried = false
    try {
      mx = await MxConnection.connect(hostName, address, opts, policy, false)
    } catch (err) {
      const e = err as NodemailerError
      if (e.code !== 'ETLS') throw err
      if (policy.verify !== 'none') {
        throw new TlsPolicyError(`TLS required by ${policy.policy}: ${e.message}`, {
          ...recordBase(policy),
          verified: false,
          failure: e.message,
        })
      }
      mx = await MxConnection.connect(hostName, address, opts, policy, true)
      retried = true
    }
    mx.tlsKey = policy.key
    mx.tls = mx.judge(policy, retried)
    if (policy.verify !== 'none' && !mx.tls.verified) {
      await mx.quit(500)
      throw new TlsPolicyError(`TLS required by ${policy.policy}: ${mx.tls.failure}`, mx.tls)
    }
    return mx
  }

  /** What the session's TLS came to under the host's policy. */
  private judge(policy: HostTls, retriedPlain: boolean): TlsRecord {
    const base = recordBase(policy)
    const socket = this.connection._socket as TLSSocket | false | null
    if (!this.connection.secure || !socket || typeof socket.getProtocol !== 'function') {
      const plain = retriedPlain ? 'the TLS handshake failed; sent in plain text' : 'STARTTLS not offered; plain text'
      return { ...base, verified: false, failure: policy.failure ?? plain }
    }
    const version = socket.getProtocol() ?? undefined
    const cipher = socket.getCipher()?.name
    const session = { ...base, ...(version ? { version } : {}), ...(cipher ? { cipher } : {}) }
    if (policy.verify === 'dane') {
      const names = policy.names.length ? policy.names : [this.hostName]
      const result = daneVerify(presentedChain(socket.getPeerCertificate(true)), policy.records ?? [], names)
      return result.ok ? { ...session, verified: true } : { ...session, verified: false, failure: result.reason }
    }
    // Node verified the chain against `ca` and the name against the MX host, even when told not to insist.
    if (socket.authorized) return { ...session, verified: true, ...(policy.failure ? { failure: policy.failure } : {}) }
    const failure = policy.failure ?? `certificate not valid for ${this.hostName}: ${socket.authorizationError}`
    return { ...session, verified: false, ...(policy.policy === 'opportunistic' ? {} : { failure }) }
  }

  private static connect(
    hostName: string,
    address: string,
    opts: MxConnectionOptions,
    policy: HostTls,
    plain: boolean,
  ): Promise<MxConnection> {
    const servername = isIP(hostName) ? undefined : hostName
    const required = policy.verify !== 'none'
    const connection = new SMTPConnection({
      host: address,
      port: opts.port,
      servername,
      name: opts.heloName,
      ignoreTLS: plain,
      ...(required ? { requireTLS: true } : { opportunisticTLS: true }),
      // Never refused during the handshake: judge() decides once it is done, before MAIL FROM.
      tls: {
        rejectUnauthorized: false,
        servername,
        ...(opts.secureContext ? { secureContext: opts.secureContext } : {}),
      },
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

  /** Sends one message to one recipient; never throws. `requireTls` passes REQUIRETLS on MAIL FROM. */
  send(from: string, to: string, body: Buffer, requireTls = false): Promise<SendResult> {
    const reused = this.messages > 0
    this.messages++
    const envelope = { from, to: [to], size: body.length, use8BitMime: true, requireTLSExtensionEnabled: requireTls }
    return new Promise((resolve) => {
      this.connection.send(envelope, body, (err, info) => {
        if (!err) {
          resolve({ kind: 'reply', reply: parseReply(info?.response ?? '250'), response: info?.response ?? '' })
          return
        }
        const e = err as NodemailerError
        if (e.code === 'EREQUIRETLS') {
          // RFC 8689 section 5: the next hop cannot carry the message on under REQUIRETLS.
          const text = `REQUIRETLS: ${this.hostName} does not support REQUIRETLS`
          resolve({ kind: 'reply', reply: { code: 550, enhanced: '5.7.30', text }, response: `550 5.7.30 ${text}` })
          return
        }
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

function recordBase(policy: HostTls): Pick<TlsRecord, 'policy' | 'mode' | 'requireTls' | 'tlsRequiredNo'> {
  return {
    policy: policy.policy,
    ...(policy.mode ? { mode: policy.mode } : {}),
    ...(policy.requireTls ? { requireTls: true as const } : {}),
    ...(policy.tlsRequiredNo ? { tlsRequiredNo: true as const } : {}),
  }
}
