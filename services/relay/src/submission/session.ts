import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import type { Pool } from '@atmos/db'
import type { Logger } from '@atmos/runtime'
import { dummyPasswordHash, verifyPassword } from '@atmos/secrets'
import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerSession,
} from 'smtp-server'
import { LineCheck } from '../message/lines.ts'
import { receivedProtocol } from '../message/received.ts'
import { Reply, type Sender, type SubmissionPolicy, type Transaction } from './accept.ts'
import type { AuthGuard } from './auth-guard.ts'
import type { SubmissionConfig } from './config.ts'
import type { MemberConnections } from './member-connections.ts'
import type { SubmissionMetrics } from './metrics.ts'

export { Reply } from './accept.ts'

/**
 * Who authenticated on a connection: a member, and the one domain its credential may send
 * as (null: any domain the member holds). Which domain a message is sent as is decided at
 * each MAIL FROM.
 */
export type SessionUser = {
  memberId: number
  did: string
  username: string
  credentialId: number
  scopeDomainId: number | null
}

type Credential = { id: number; memberId: number; did: string; username: string; scopeDomainId: number | null }

export type SubmissionDeps = {
  config: SubmissionConfig
  sql: Pool
  logger: Logger
  guard: AuthGuard
  memberConnections: MemberConnections
  metrics: SubmissionMetrics
  /** Who may send what, signing and spooling: shared with the HTTP send API. */
  policy: SubmissionPolicy
}

/**
 * One submission connection as smtp-server callbacks: who may log in (here), and, through
 * the shared SubmissionPolicy (accept.ts), who may send as whom and to whom, and how a
 * message is rewritten, signed and spooled.
 */
export class SubmissionHandlers {
  private readonly deps: SubmissionDeps
  private readonly policy: SubmissionPolicy
  private readonly instance = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
  private readonly sessions = new Map<string, { user?: SessionUser; tx?: Transaction; closed?: boolean }>()

  constructor(deps: SubmissionDeps) {
    this.deps = deps
    this.policy = deps.policy
  }

  private refuse(reply: Reply): Reply {
    return this.policy.refuse(reply)
  }

  private state(session: SMTPServerSession) {
    let s = this.sessions.get(session.id)
    if (!s) {
      s = {}
      this.sessions.set(session.id, s)
    }
    return s
  }

  async onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<SMTPServerAuthenticationResponse> {
    if (!session.secure) {
      // Never check a password that crossed the network in clear.
      throw this.refuse(new Reply(530, '5.7.0 Must issue a STARTTLS command first', 'no_tls'))
    }
    // Taken before anything is awaited, so that onClose finds it if the client leaves mid-login.
    const state = this.state(session)
    const gate = await this.deps.guard.begin(session.remoteAddress)
    if (!gate.allowed) {
      throw this.refuse(
        gate.why === 'locked'
          ? new Reply(
              454,
              `4.7.0 Too many failed logins from ${session.remoteAddress}; try again in ${Math.ceil(gate.retryInMs / 60_000)} minutes`,
              'auth_backoff',
            )
          : new Reply(
              454,
              `4.7.0 Too many logins at once from ${session.remoteAddress}; try again shortly`,
              'auth_backoff',
            ),
      )
    }
    let cred: Credential | null
    try {
      cred = await this.checkPassword(auth)
    } catch (err) {
      // Not the client's fault: nothing counts against its address, and it may retry at once.
      await this.deps.guard.finish(gate.ticket, 'unchecked')
      this.deps.logger.error({ err, ip: session.remoteAddress }, 'submission login not checked')
      throw this.refuse(new Reply(454, '4.7.0 Temporary authentication failure; try again later', 'auth_unavailable'))
    }
    await this.deps.guard.finish(gate.ticket, cred ? 'ok' : 'failed')
    if (!cred) {
      this.deps.logger.info({ ip: session.remoteAddress, username: auth.username }, 'submission login failed')
      throw this.refuse(new Reply(535, '5.7.8 Authentication credentials invalid', 'bad_credentials'))
    }
    const limit = this.deps.config.maxConnectionsPerMember
    const token = this.token(session)
    if (!(await this.deps.memberConnections.acquire(cred.memberId, token, limit))) {
      throw this.refuse(
        new Reply(
          454,
          `4.7.0 ${cred.did} already holds ${limit} connections (at most ${limit}); retry later`,
          'member_connections',
        ),
      )
    }
    if (state.closed) {
      // The client left while its login was checked: onClose has run and will not release the slot.
      this.deps.memberConnections.release(token)
      throw new Reply(421, '4.4.2 Connection closed during login', 'internal')
    }
    const user: SessionUser = {
      memberId: cred.memberId,
      did: cred.did,
      username: cred.username,
      credentialId: cred.id,
      scopeDomainId: cred.scopeDomainId,
    }
    state.user = user
    void this.deps.sql`update smtp_credentials set last_used_at = now() where id = ${cred.id}`.catch(() => {})
    return { user }
  }

  /** The credential the login proves, or null. */
  private async checkPassword(auth: SMTPServerAuthentication): Promise<Credential | null> {
    const username = (auth.username ?? '').trim().toLowerCase()
    const [cred] = username
      ? await this.deps.sql<(Credential & { hash: string })[]>`
          select c.id::int as id, c.password_hash as hash, c.username, c.domain_id::int as "scopeDomainId",
                 m.id::int as "memberId", m.did
          from smtp_credentials c join members m on m.id = c.member_id
          where c.username = ${username} and c.revoked_at is null`
      : []
    // An unknown user costs one scrypt like a wrong password, so names cannot be probed.
    const ok = await verifyPassword(auth.password ?? '', cred?.hash ?? (await dummyPasswordHash()))
    if (!ok || !cred) return null
    const { hash: _, ...credential } = cred
    return credential
  }

  onClose(session: SMTPServerSession): void {
    const s = this.sessions.get(session.id)
    this.sessions.delete(session.id)
    if (s) s.closed = true
    if (!s?.user) return
    this.deps.memberConnections.release(this.token(session))
  }

  /** This connection's slot, unique across replicas. */
  private token(session: SMTPServerSession): string {
    return `${this.instance}:${session.id}`
  }

  private user(session: SMTPServerSession): SessionUser {
    const user = this.sessions.get(session.id)?.user
    // smtp-server answers 530 before MAIL, RCPT and DATA without AUTH; this is a backstop.
    if (!user) throw this.refuse(new Reply(530, '5.7.0 Authentication required', 'no_tls'))
    return user
  }

  async onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const user = this.user(session)
    const { config } = this.deps
    if (session.transaction > config.maxMessagesPerConnection) {
      throw this.refuse(
        new Reply(
          421,
          `4.7.0 At most ${config.maxMessagesPerConnection} messages a connection; reconnect to send more`,
          'connection_messages',
        ),
      )
    }
    const declared = address.args && typeof address.args.SIZE === 'string' ? Number(address.args.SIZE) : 0
    if (declared > config.maxSize) {
      throw this.refuse(new Reply(552, `5.3.4 Message size exceeds the limit of ${config.maxSize} bytes`, 'oversize'))
    }
    // RFC 8689: smtp-server accepts REQUIRETLS only over TLS; delivery then insists on verified TLS.
    const requireTls = session.envelope.requireTLS === true
    this.state(session).tx = await this.policy.admit(sender(user), address.address, requireTls)
  }

  async onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const user = this.user(session)
    const tx = this.sessions.get(session.id)?.tx
    if (!tx) throw new Reply(503, '5.5.1 MAIL first', 'internal')
    await this.policy.checkRecipient(
      sender(user),
      tx,
      address.address,
      session.envelope.rcptTo.map((r) => r.address),
    )
  }

  async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const user = this.user(session)
    const { config } = this.deps
    const chunks: Buffer[] = []
    let size = 0
    // Line ends and lengths are checked as the bytes arrive (lines.ts says why).
    const lines = new LineCheck()
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length
      if (!lines.problem) lines.push(chunk)
      // Past the limit or a bad line the rest is read and dropped, so that the reply comes after the end of DATA.
      if (size <= config.maxSize && !lines.problem) chunks.push(chunk)
    }
    lines.end()
    if (stream.sizeExceeded || size > config.maxSize) {
      throw this.refuse(new Reply(552, `5.3.4 Message size exceeds the limit of ${config.maxSize} bytes`, 'oversize'))
    }
    if (lines.problem) throw this.refuse(new Reply(550, `5.6.0 ${lines.problem}`, 'bad_headers'))
    const tx = this.sessions.get(session.id)?.tx
    if (!tx) throw new Reply(503, '5.5.1 MAIL first', 'internal')

    const from = sender(user)
    const signed = await this.policy.sign({
      sender: from,
      tx,
      envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      message: Buffer.concat(chunks, size),
      recipients: session.envelope.rcptTo.map((r) => r.address),
      arrival: {
        protocol: receivedProtocol(session.secure, true),
        client: { helo: session.hostNameAppearsAs, address: session.remoteAddress },
      },
    })
    const ids = await this.policy.commit(from, tx, signed)
    return `2.0.0 Ok: queued as ${ids[0]}${ids.length > 1 ? ` and ${ids.length - 1} more` : ''}`
  }
}

function sender(user: SessionUser): Sender {
  return { memberId: user.memberId, did: user.did, scopeDomainId: user.scopeDomainId }
}
