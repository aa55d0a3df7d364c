import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import type { Pool } from '@atmos/db'
import { type SigningKeys, signMessage } from '@atmos/dkim'
import { countingDay, dailyCapFor } from '@atmos/enrolment'
import { messageToken, TRANSACTIONAL_CATEGORIES, unsubscribeToken, verpAddress } from '@atmos/mail-feedback'
import type { deliverMessage, TypedQueue } from '@atmos/queues'
import { Batcher, type Logger, withTimeout } from '@atmos/runtime'
import { dummyPasswordHash, verifyPassword } from '@atmos/secrets'
import type {
  SMTPServerAddress,
  SMTPServerAuthentication,
  SMTPServerAuthenticationResponse,
  SMTPServerDataStream,
  SMTPServerSession,
} from 'smtp-server'
import { checkRecipient } from '../message/addresses.ts'
import { MessageFormatError, parseMessage } from '../message/headers.ts'
import { LineCheck } from '../message/lines.ts'
import { type ReceivedTrace, receivedProtocol } from '../message/received.ts'
import { HeaderPolicyError, prepareMessage } from '../message/rewrite.ts'
import { admitSender } from './admission.ts'
import type { AuthGuard } from './auth-guard.ts'
import type { SubmissionConfig } from './config.ts'
import type { MemberConnections } from './member-connections.ts'
import type { RefusalReason, SubmissionMetrics } from './metrics.ts'
import { OverCapError, SubmissionSpool } from './spool.ts'
import { StandingReader } from './standing.ts'
import { SuppressionLookup } from './suppressions.ts'
import { recipientDomainsOf, type ThrottleRules } from './throttle.ts'

/** An SMTP reply for smtp-server's callbacks: the code, and the text with its enhanced status. */
export class Reply extends Error {
  readonly responseCode: number
  readonly reason: RefusalReason
  constructor(code: number, text: string, reason: RefusalReason) {
    super(text)
    this.responseCode = code
    this.reason = reason
  }
}

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

/**
 * What a member's message needs beyond the session, read at MAIL FROM: the domain it is sent
 * as (its keys sign, its cap counts), the cap, and REQUIRETLS.
 */
type Transaction = {
  domainId: number
  domain: string
  cap: number
  day: string
  resetsAt: Date
  sentToday: number
  requireTls: boolean
}

export type SubmissionDeps = {
  config: SubmissionConfig
  sql: Pool
  logger: Logger
  guard: AuthGuard
  memberConnections: MemberConnections
  keys: SigningKeys
  deliveries: TypedQueue<typeof deliverMessage>
  metrics: SubmissionMetrics
  pool: { domain: string; bounceDomain: string; verpPrefix: string; feedbackSenderId: string }
  tokenSecret: string
  /** Spike and spray rules (throttle.ts); absent: none. */
  throttle?: ThrottleRules
}

/**
 * The policy of one submission connection, as smtp-server callbacks: who may log in,
 * who may send as whom and to whom, and how a message is rewritten, signed and spooled.
 */
export class SubmissionHandlers {
  private readonly deps: SubmissionDeps
  private readonly instance = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
  private readonly sessions = new Map<string, { user?: SessionUser; tx?: Transaction; closed?: boolean }>()
  private readonly transactional: Set<string>
  private readonly standing: StandingReader
  private readonly suppressions: SuppressionLookup
  private readonly spool: SubmissionSpool
  /** Concurrent sessions' delivery jobs go to Redis together. */
  private readonly enqueues: Batcher<string[], undefined>

  constructor(deps: SubmissionDeps) {
    this.deps = deps
    this.transactional = new Set([...TRANSACTIONAL_CATEGORIES, ...deps.config.unsubscribe.transactionalCategories])
    this.standing = new StandingReader(deps.sql, deps.config.labelerDid)
    this.suppressions = new SuppressionLookup(deps.sql)
    this.spool = new SubmissionSpool(deps.sql)
    this.enqueues = new Batcher(async (batches: string[][]) => {
      const ids = batches.flat()
      await deps.deliveries.enqueueBulk(
        ids.map((messageId) => ({ payload: { messageId }, opts: { jobId: messageId } })),
      )
      return batches.map(() => undefined)
    })
  }

  private refuse(reply: Reply): Reply {
    this.deps.metrics.refused.inc({ reason: reply.reason })
    return reply
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
    // The envelope sender is held to the recipients' plain form (no quoted or routed local
    // parts, a host name) and may not end in a dot: the same absolute name From refuses.
    const sender = checkRecipient(address.address)
    if (!sender.ok || address.address.endsWith('.')) {
      throw this.refuse(
        new Reply(
          550,
          `5.7.1 Envelope sender must be an address at a domain ${user.did} holds in the relay`,
          'foreign_sender',
        ),
      )
    }
    const now = new Date()
    const { day, resetsAt } = countingDay(now)
    const admission = admitSender(await this.standing.read(user.memberId, day), sender, user.scopeDomainId)
    if (!admission.ok) throw this.refuse(new Reply(admission.code, admission.text, admission.reason))
    const { domain } = admission
    const { cap } = dailyCapFor(domain.activatedAt, now, config.warmingTiers, config.dailyCap)
    // RFC 8689: smtp-server accepts REQUIRETLS only over TLS; delivery then insists on verified TLS.
    const requireTls = session.envelope.requireTLS === true
    const tx: Transaction = {
      domainId: domain.id,
      domain: domain.domain,
      cap,
      day,
      resetsAt,
      sentToday: domain.sentToday,
      requireTls,
    }
    if (tx.sentToday >= cap) throw this.refuse(overCap(tx))
    this.state(session).tx = tx
  }

  async onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const user = this.user(session)
    const tx = this.sessions.get(session.id)?.tx
    if (!tx) throw new Reply(503, '5.5.1 MAIL first', 'internal')
    const { config } = this.deps
    const rcpt = checkRecipient(address.address)
    if (!rcpt.ok) throw this.refuse(new Reply(553, `5.1.3 <${address.address}>: ${rcpt.reason}`, 'recipient_syntax'))
    if (session.envelope.rcptTo.length >= config.maxRecipients) {
      throw this.refuse(
        new Reply(452, `4.5.3 Too many recipients: at most ${config.maxRecipients} a message`, 'too_many_recipients'),
      )
    }
    const suppressed = await this.suppressions.find(user.memberId, rcpt.address)
    if (suppressed) {
      const why =
        suppressed.reason === 'hard_bounce'
          ? 'it bounced permanently'
          : suppressed.reason === 'complaint'
            ? 'its owner reported your mail as spam'
            : suppressed.reason === 'unsubscribe'
              ? 'its owner unsubscribed'
              : 'an operator suppressed it'
      throw this.refuse(
        new Reply(
          550,
          `5.1.1 <${address.address}> is on the suppression list of ${user.did} (sending as ${tx.domain}) since ${suppressed.since}: ${why}`,
          'suppressed',
        ),
      )
    }
    if (tx.sentToday + session.envelope.rcptTo.length + 1 > tx.cap) throw this.refuse(overCap(tx))
    // At RCPT, not DATA: a deferral defers only the recipients past the threshold, before any body is sent.
    const throttled = await this.deps.throttle?.check({
      memberId: user.memberId,
      domainId: tx.domainId,
      domain: tx.domain,
      recipientDomains: recipientDomainsOf([...session.envelope.rcptTo.map((r) => r.address), rcpt.address]),
    })
    if (throttled?.defer) throw this.refuse(new Reply(451, `4.7.1 ${throttled.defer.text}`, 'throttled'))
  }

  async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const user = this.user(session)
    const { config, keys, pool, logger } = this.deps
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

    let prepared: ReturnType<typeof prepareMessage>
    try {
      const parsed = parseMessage(Buffer.concat(chunks, size))
      if (parsed.eol !== '\r\n') throw new MessageFormatError('header lines must end with CRLF')
      prepared = prepareMessage(parsed, {
        memberId: user.memberId,
        did: user.did,
        domain: tx.domain,
        poolId: pool.feedbackSenderId,
      })
    } catch (err) {
      if (err instanceof HeaderPolicyError) {
        throw this.refuse(
          new Reply(err.code, err.message, err.message.startsWith('5.7.1') ? 'foreign_from' : 'bad_headers'),
        )
      }
      if (err instanceof MessageFormatError) throw this.refuse(new Reply(550, `5.6.0 ${err.message}`, 'bad_headers'))
      throw err
    }

    // Every active key of the domain sent as (RSA and Ed25519), then the pool's.
    const [domainKeys, poolKey] = await Promise.all([keys.domain(tx.domainId), keys.pool(pool.domain)])
    if (!domainKeys.length || !poolKey) {
      logger.error(
        { member: user.did, domain: tx.domain, domainKeys: domainKeys.length, poolKey: !!poolKey },
        'no DKIM key to sign with',
      )
      throw this.refuse(new Reply(451, '4.3.0 Signing is not available right now; try again later', 'no_signing_key'))
    }
    const verp = { bounceDomain: pool.bounceDomain, prefix: pool.verpPrefix, secret: this.deps.tokenSecret }
    const now = new Date()
    const single = session.envelope.rcptTo.length === 1
    // Mail without a category gets no unsubscribe: the relay cannot tell a password reset from
    // a newsletter, and an unsubscribe on a login mail lets a recipient (or a link scanner's
    // POST) cut himself off from his own account. Bulk senders name their categories; the
    // category-mismatch count is there for those who call bulk mail transactional.
    const offersUnsubscribe = prepared.category !== null && !this.transactional.has(prepared.category)
    const unsub = config.unsubscribe
    const copies = await Promise.all(
      session.envelope.rcptTo.map(async (rcpt) => {
        const checked = checkRecipient(rcpt.address)
        if (!checked.ok) throw new Error('recipient changed after RCPT')
        const id = randomUUID()
        const received: ReceivedTrace = {
          by: config.hostname,
          protocol: receivedProtocol(session.secure, true),
          id,
          ...(single ? { for: checked.address } : {}),
          ...(config.receivedClientAddress
            ? { client: { helo: session.hostNameAppearsAs, address: session.remoteAddress } }
            : {}),
          date: now,
        }
        const returnPath = verpAddress(verp, id)
        // One copy per recipient, so each carries its own token (signed with the rest).
        const links = offersUnsubscribe
          ? {
              https: `${unsub.url.replace(/\/$/, '')}/${unsubscribeToken(verp, { memberId: user.memberId, recipient: checked.address, messageId: id })}`,
              ...(unsub.mailto ? { mailto: returnPath } : {}),
            }
          : undefined
        return {
          id,
          recipient: checked.address,
          domain: checked.domain,
          returnPath,
          body: await signMessage(
            prepared.forRecipient(messageToken(verp, id), received, links),
            [...domainKeys, poolKey],
            now,
          ),
        }
      }),
    )

    let ids: string[]
    try {
      ids = await this.spool.spool({
        memberId: user.memberId,
        domainId: tx.domainId,
        envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        messageIdHeader: prepared.messageIdHeader,
        category: prepared.category,
        // Only transactional mail is checked for one body sent to many (the operator's category mismatch).
        bodyHash: prepared.category !== null && !offersUnsubscribe ? prepared.bodyHash() : null,
        copies,
        expiresAt: new Date(now.getTime() + config.messageLifetime),
        day: tx.day,
        cap: tx.cap,
        requireTls: tx.requireTls,
      })
    } catch (err) {
      if (err instanceof OverCapError) throw this.refuse(overCap(tx))
      throw err
    }
    this.deps.metrics.accepted.inc()
    this.deps.metrics.recipients.inc({}, ids.length)
    logger.info({ member: user.did, domain: tx.domain, messages: ids, size }, 'submission spooled')
    // Spooled is durable: the reply is 250 even when Redis is down, and the delivery
    // reconciler enqueues whatever has no job. The job id makes a re-enqueue a no-op.
    await withTimeout(this.enqueues.call(ids), 1000, 'redis').catch((err: Error) =>
      logger.warn({ err: err.message, messages: ids }, 'delivery not enqueued; the reconciler will'),
    )
    return `2.0.0 Ok: queued as ${ids[0]}${ids.length > 1 ? ` and ${ids.length - 1} more` : ''}`
  }
}

function overCap(tx: Transaction): Reply {
  return new Reply(
    451,
    `4.7.1 ${tx.domain} reached its limit of ${tx.cap} recipients today; it resets at ${tx.resetsAt.toISOString()}`,
    'over_cap',
  )
}
