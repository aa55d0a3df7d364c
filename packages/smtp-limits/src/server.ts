import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { SMTPServer, type SMTPServerDataStream, type SMTPServerOptions } from 'smtp-server'
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js'
import { addressKey } from './address.ts'
import { MessageRate } from './rate.ts'

/** What one peer may cost a listener. */
export type SmtpLimits = {
  /** Connections one address (an IPv6 /64) may hold at once on this process. */
  maxConnectionsPerAddress: number
  /** From connect until the client proves itself (see `establishedBy`), however busy it keeps the connection. */
  establishTimeout: number
  /** A whole connection, from connect, however busy. */
  maxSessionLength: number
  /** Bytes a second a client must keep up while it sends a message; 0 leaves DATA unbounded but for the idle timeout. */
  minDataRate: number
  /** The rate is measured over consecutive windows this long, the first starting at DATA. */
  dataRateWindow: number
  /**
   * Messages one address (an IPv6 /64) may begin within `messageRateWindow` on this process;
   * past it MAIL FROM gets 450 4.7.1 with the wait. 0 or absent: no message rate.
   */
  maxMessagesPerAddress?: number
  messageRateWindow?: number
}

export type LimitReason =
  | 'address_connections'
  | 'establish_timeout'
  | 'session_length'
  | 'data_rate'
  | 'auth_before_tls'
  | 'message_rate'

/**
 * A connection refused or closed by a limit, or an AUTH refused before TLS. `first`: worth a
 * log line (an address refused again and again while at its limit is logged once).
 */
export type LimitEvent = { reason: LimitReason; address: string; key: string; first: boolean }

export type LimitOptions = {
  limits: SmtpLimits
  /** What proves a client, ending the establish deadline: a login (submission) or an accepted recipient (MX). */
  establishedBy: 'auth' | 'rcpt'
  /**
   * AUTH neither advertised nor accepted without TLS: refused with RFC 3207's 530 5.7.0
   * before a credential is read (smtp-server would prompt for it with 334, or answer 538).
   */
  authAfterTls: boolean
  onLimit?: (event: LimitEvent) => void
}

/**
 * An smtp-server whose peers cannot starve it: a per-address connection limit checked at
 * accept (before any TLS handshake), a deadline from connect to the client proving itself,
 * a bound on a session's length and a minimum data rate during DATA. smtp-server's own idle
 * timeout cannot do this: one byte now and then resets it, so a trickle holds a connection
 * for as long as it likes, and enough of them hold every slot of `maxClients`.
 *
 * Every reply carries an enhanced status code: ours write theirs in the text, smtp-server
 * adds its own to the replies it writes itself.
 */
export class LimitedSMTPServer extends SMTPServer {
  readonly limitOptions: LimitOptions
  /** Open connections by address key. */
  private readonly open = new Map<string, number>()
  /** Keys refused since they last were under their limit: a flood is logged once. */
  private readonly saturated = new Set<string>()
  /** Accepted sockets not yet handed to a connection, by peer (address and port). */
  private readonly accepted = new Map<string, ConnectionGuard>()
  private readonly sessions = new Map<string, ConnectionGuard>()
  /** Messages begun by address key, when the limits set a message rate. */
  readonly messageRate: MessageRate | undefined
  /** Keys refused by the message rate since they last were under it: logged once. */
  private readonly rateRefused = new Set<string>()

  constructor(options: SMTPServerOptions, limitOptions: LimitOptions) {
    // Every reply carries an enhanced status code (RFC 3463), smtp-server's own ones too
    // (501 syntax errors, 503 bad sequence …), and EHLO says so (RFC 2034).
    super({ hideENHANCEDSTATUSCODES: false, ...options })
    this.limitOptions = limitOptions
    const { maxMessagesPerAddress: max = 0, messageRateWindow: window = 0 } = limitOptions.limits
    this.messageRate = max > 0 && window > 0 ? new MessageRate(max, window) : undefined
    // smtp-server's accept handler runs only for the connections this admits.
    const accept = this.server.listeners('connection') as Array<(socket: Socket) => void>
    this.server.removeAllListeners('connection')
    this.server.on('connection', (socket: Socket) => {
      if (this.admit(socket)) for (const listener of accept) listener.call(this.server, socket)
    })
    this.watchHandlers()
  }

  /** Connections open now from the address's key (tests and metrics). */
  connectionsFrom(address: string): number {
    return this.open.get(addressKey(address)) ?? 0
  }

  private admit(socket: Socket): boolean {
    const address = (socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')
    if (!address) {
      socket.destroy()
      return false
    }
    const key = addressKey(address)
    const open = this.open.get(key) ?? 0
    if (open >= this.limitOptions.limits.maxConnectionsPerAddress) {
      const first = !this.saturated.has(key)
      this.saturated.add(key)
      this.report({ reason: 'address_connections', address, key, first })
      socket.on('error', () => {})
      // Before an implicit TLS handshake nothing readable can be written: the socket just goes.
      if (this.options.secure && !this.options.needsUpgrade && !this.options.secured) {
        socket.destroy()
        return false
      }
      socket.resume()
      socket.end(`421 4.7.0 Too many connections from ${key}; try again later\r\n`)
      setTimeout(() => socket.destroy(), 1000).unref()
      return false
    }
    this.open.set(key, open + 1)
    const guard = new ConnectionGuard(this, socket, address, key)
    this.accepted.set(peer(socket), guard)
    // STARTTLS removes the raw socket's listeners; the connection releases the guard then.
    socket.once('close', () => guard.release())
    return true
  }

  /** @internal */
  released(guard: ConnectionGuard): void {
    const left = (this.open.get(guard.key) ?? 1) - 1
    if (left > 0) this.open.set(guard.key, left)
    else this.open.delete(guard.key)
    if (left < this.limitOptions.limits.maxConnectionsPerAddress) this.saturated.delete(guard.key)
    if (this.accepted.get(guard.peer) === guard) this.accepted.delete(guard.peer)
    if (guard.connection) this.sessions.delete(guard.connection.id)
  }

  /** @internal */
  report(event: LimitEvent): void {
    this.limitOptions.onLimit?.(event)
  }

  /** SMTPServer.connect (smtp-server 3.21.6) with a connection that knows its guard. */
  override connect(socket: Socket | TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new LimitedConnection(this, socket, socketOptions)
    const guard = this.accepted.get(peer(socket))
    if (guard) {
      this.accepted.delete(guard.peer)
      guard.connection = connection
      connection.guard = guard
      this.sessions.set(connection.id, guard)
    }
    this.connections.add(connection)
    connection.on('error', (err: Error) => this._onError(err))
    connection.on('connect', (data) => this._onClientConnect(data))
    connection.init()
  }

  /** What the establish deadline and the DATA rate need to see of the application's handlers. */
  private watchHandlers(): void {
    const { onAuth, onMailFrom, onRcptTo, onData } = this
    const rate = this.messageRate
    if (rate) {
      // Refused at MAIL FROM, before a recipient is checked or a byte of the message read.
      this.onMailFrom = (address, session, callback) => {
        const key = this.sessions.get(session.id)?.key ?? addressKey(session.remoteAddress)
        const wait = rate.waitFor(key)
        if (!wait) {
          this.rateRefused.delete(key)
          return onMailFrom.call(this, address, session, callback)
        }
        const first = !this.rateRefused.has(key)
        // A key refused once and never back would stay: past a scan's worth, start over.
        if (this.rateRefused.size >= 10_000) this.rateRefused.clear()
        this.rateRefused.add(key)
        this.report({ reason: 'message_rate', address: session.remoteAddress, key, first })
        callback(
          Object.assign(
            new Error(
              `4.7.1 Too many messages from ${key}: at most ${rate.max} in ${seconds(rate.windowMs)}; try again in ${seconds(Math.ceil(wait / 1000) * 1000)}`,
            ),
            { responseCode: 450 },
          ),
        )
      }
    }
    if (this.limitOptions.establishedBy === 'auth') {
      this.onAuth = (auth, session, callback) =>
        onAuth.call(this, auth, session, (err, response) => {
          if (!err && response?.user) this.sessions.get(session.id)?.established()
          callback(err, response)
        })
    } else {
      this.onRcptTo = (address, session, callback) =>
        onRcptTo.call(this, address, session, (err) => {
          if (!err) this.sessions.get(session.id)?.established()
          callback(err)
        })
    }
    this.onData = (stream, session, callback) => {
      const guard = this.sessions.get(session.id)
      rate?.hit(guard?.key ?? addressKey(session.remoteAddress))
      guard?.dataStarted(stream)
      onData.call(this, stream, session, (err, message) => {
        callback(err, message)
        guard?.replied()
      })
    }
  }
}

const ENHANCED_STATUS = /^[245]\.\d{1,3}\.\d{1,3}(?: |$)/

class LimitedConnection extends SMTPConnection {
  guard: ConnectionGuard | undefined

  private authAfterTls(): boolean {
    return !this.secure && (this._server as LimitedSMTPServer).limitOptions.authAfterTls
  }

  /**
   * Our own replies carry their enhanced status code in the text already (`5.7.1 …`), chosen
   * for the case; smtp-server would put its generic one in front of it.
   */
  override send(code: number, data?: string | string[], context?: string | false): void {
    if (typeof data === 'string' && ENHANCED_STATUS.test(data)) super.send(code, data, false)
    else super.send(code, data, context)
  }

  override handler_EHLO(command: Buffer, callback: () => void): void {
    if (!this.authAfterTls()) {
      super.handler_EHLO(command, callback)
      return
    }
    // smtp-server advertises AUTH whenever the command is enabled; for this one reply it is not.
    const own = this.session.disabledCommands
    const restore = () => {
      if (own) this.session.disabledCommands = own
      else delete this.session.disabledCommands
    }
    this.session.disabledCommands = [...(own ?? this._server.options.disabledCommands), 'AUTH']
    try {
      super.handler_EHLO(command, () => {
        restore()
        callback()
      })
    } finally {
      restore()
    }
  }

  override handler_AUTH(command: Buffer, callback: () => void): void {
    if (!this.authAfterTls()) {
      super.handler_AUTH(command, callback)
      return
    }
    this.send(530, '5.7.0 Must issue a STARTTLS command first')
    const server = this._server as LimitedSMTPServer
    server.report({ reason: 'auth_before_tls', address: this.remoteAddress, key: this.guard?.key ?? '', first: false })
    callback()
  }

  override _onClose(): void {
    super._onClose()
    this.guard?.release()
  }
}

/** The limits of one accepted connection: its deadlines and, during DATA, its rate. */
class ConnectionGuard {
  readonly key: string
  readonly address: string
  readonly peer: string
  connection: LimitedConnection | undefined
  private readonly server: LimitedSMTPServer
  private readonly socket: Socket
  private establishTimer: NodeJS.Timeout | undefined
  private readonly sessionTimer: NodeJS.Timeout
  private stopData: (() => void) | undefined
  /** Between the end of a message and our reply the client waits for us: a session deadline waits too. */
  private awaitingReply = false
  private closeAfterReply = false
  private done = false
  private releasedOnce = false

  constructor(server: LimitedSMTPServer, socket: Socket, address: string, key: string) {
    this.server = server
    this.socket = socket
    this.address = address
    this.key = key
    this.peer = peer(socket)
    const { limits, establishedBy } = server.limitOptions
    const proof = establishedBy === 'auth' ? 'successful login' : 'accepted recipient'
    this.establishTimer = setTimeout(
      () => this.expire('establish_timeout', `4.7.0 No ${proof} within ${seconds(limits.establishTimeout)}; closing`),
      limits.establishTimeout,
    )
    this.establishTimer.unref()
    this.sessionTimer = setTimeout(() => {
      if (this.awaitingReply) this.closeAfterReply = true
      else this.sessionOver()
    }, limits.maxSessionLength)
    this.sessionTimer.unref()
  }

  established(): void {
    clearTimeout(this.establishTimer)
    this.establishTimer = undefined
  }

  dataStarted(stream: SMTPServerDataStream): void {
    const { minDataRate, dataRateWindow } = this.server.limitOptions.limits
    const socket = this.connection?._socket
    // The whole message is in: from here on the client waits for us.
    stream.once('end', () => {
      this.awaitingReply = true
      this.stopData?.()
    })
    if (!socket || minDataRate <= 0) return
    let bytes = 0
    let measured = 0
    const count = (chunk: Buffer) => {
      bytes += chunk.length
    }
    // The socket already flows into the parser; one more listener only watches.
    socket.on('data', count)
    const need = Math.ceil((minDataRate * dataRateWindow) / 1000)
    const timer = setInterval(() => {
      if (bytes - measured < need) {
        this.expire('data_rate', `4.7.0 Message data slower than ${minDataRate} bytes a second; closing`)
      }
      measured = bytes
    }, dataRateWindow)
    timer.unref()
    this.stopData = () => {
      clearInterval(timer)
      socket.off('data', count)
      this.stopData = undefined
    }
  }

  replied(): void {
    this.stopData?.()
    this.awaitingReply = false
    if (this.closeAfterReply) setImmediate(() => this.sessionOver())
  }

  private sessionOver(): void {
    const { maxSessionLength } = this.server.limitOptions.limits
    this.expire('session_length', `4.7.0 Session longer than ${seconds(maxSessionLength)}; reconnect to continue`)
  }

  private expire(reason: LimitReason, text: string): void {
    if (this.done) return
    this.done = true
    this.clear()
    this.server.report({ reason, address: this.address, key: this.key, first: true })
    // send() closes the connection after a 421, and writes nothing in the middle of a TLS handshake.
    if (this.connection) this.connection.send(421, text)
    else this.socket.destroy()
  }

  private clear(): void {
    clearTimeout(this.establishTimer)
    clearTimeout(this.sessionTimer)
    this.stopData?.()
  }

  release(): void {
    if (this.releasedOnce) return
    this.releasedOnce = true
    this.done = true
    this.clear()
    this.server.released(this)
  }
}

function peer(socket: Socket | TLSSocket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`
}

function seconds(ms: number): string {
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}`
  const s = Math.round(ms / 100) / 10
  return `${s} second${s === 1 ? '' : 's'}`
}
