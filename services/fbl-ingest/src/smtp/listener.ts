import { readFileSync } from 'node:fs'
import { processInbound, TypedQueue } from '@atmos/queues'
import type { BaseContext, Logger } from '@atmos/runtime'
import { withTimeout } from '@atmos/runtime'
import { LimitedSMTPServer } from '@atmos/smtp-limits'
import type { SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from 'smtp-server'
import type { FblIngestConfig } from '../config.ts'
import { MemberDomains } from '../forwarding/member-domains.ts'
import type { FblMetrics } from '../metrics.ts'
import type { PoolIdentity } from '../pool.ts'
import { inboundJobId } from '../process/jobs.ts'
import { authenticateReceipt, dnsResolver } from './authenticate.ts'
import { atPoolDomain, checkInboundRecipient, checkRecipient, type RecipientPolicy } from './recipients.ts'
import { storeInbound } from './store.ts'

/** An SMTP reply for smtp-server's callbacks. */
class Reply extends Error {
  readonly responseCode: number
  constructor(code: number, text: string) {
    super(text)
    this.responseCode = code
  }
}

/**
 * Port 25 for the pool's own domains: bounces to VERP addresses, feedback-loop reports,
 * operator mail. Every accepted message is committed to inbound_messages before the 250,
 * and only then queued for the classifier; if Redis does not take the job, the worker's
 * reconciler finds the row.
 */
export class InboundListener {
  private readonly ctx: BaseContext<FblIngestConfig>
  private readonly metrics: FblMetrics
  private readonly logger: Logger
  private server: LimitedSMTPServer | undefined
  private queue: TypedQueue<typeof processInbound> | undefined
  private policy: RecipientPolicy | undefined
  private resolver: ReturnType<typeof dnsResolver> | undefined
  private mta = ''
  address: { host: string; port: number } | undefined

  constructor(ctx: BaseContext<FblIngestConfig>, metrics: FblMetrics) {
    this.ctx = ctx
    this.metrics = metrics
    this.logger = ctx.logger.child({ concern: 'smtp' })
  }

  async start(pool: PoolIdentity): Promise<void> {
    const { config } = this.ctx
    const s = config.fblIngest.smtp
    const tls =
      s.tlsCertFile && s.tlsKeyFile ? { key: readFileSync(s.tlsKeyFile), cert: readFileSync(s.tlsCertFile) } : undefined
    this.queue = new TypedQueue(processInbound, this.ctx.redis, config.redis.prefix)
    const policy: RecipientPolicy = {
      verp: pool.verp,
      poolDomain: pool.domain,
      operatorMailboxes: config.fblIngest.operatorMailboxes,
      feedbackMailboxes: config.fblIngest.feedbackMailboxes,
      srs: { secret: pool.verp.secret, bounceDomain: pool.verp.bounceDomain },
      srsMaxAgeDays: Math.floor(config.fblIngest.forwarding.srsMaxAge / 86_400_000),
      dmarcMailbox: config.fblIngest.dmarc.mailbox,
    }
    this.policy = policy
    const fwd = config.fblIngest.forwarding
    const memberDomains = new MemberDomains(this.ctx.db, { ttlMs: fwd.cacheTtl })
    this.resolver = dnsResolver(config.fblIngest.dnsServers, config.fblIngest.authTimeout, config.fblIngest.dnsPort)
    this.mta = s.hostname || pool.domain
    const options: SMTPServerOptions = {
      ...(tls ?? {}),
      secure: false,
      disabledCommands: tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      authOptional: true,
      name: s.hostname || pool.domain,
      size: s.maxSize,
      disableReverseLookup: true,
      maxClients: s.maxClients,
      socketTimeout: s.socketTimeout,
      closeTimeout: 5000,
      logger: false,
      onRcptTo: (address, session, cb) => {
        if (session.envelope.rcptTo.length >= s.maxRecipients) {
          this.metrics.refused.inc({ reason: 'too_many_recipients' })
          return cb(new Reply(452, `4.5.3 Too many recipients: at most ${s.maxRecipients}`))
        }
        // One transaction carries either the pool's own mail or replies to members' domains, not
        // both: they are stored and processed differently. The other kind is deferred (RFC 5321
        // lets a client send it again in a transaction of its own).
        const first = session.envelope.rcptTo[0]
        if (first && atPoolDomain(first.address, policy) !== atPoolDomain(address.address, policy)) {
          this.metrics.refused.inc({ reason: 'mixed_recipients' })
          return cb(new Reply(452, '4.5.3 Send mail for this recipient in a transaction of its own'))
        }
        checkInboundRecipient(address.address, policy, (d) => memberDomains.lookup(d), fwd.perDomainPerHour).then(
          (checked) => {
            if ('reason' in checked) {
              this.metrics.refused.inc({ reason: checked.reason })
              return cb(new Reply(checked.code, checked.message))
            }
            cb()
          },
          (err: Error) => {
            this.logger.warn({ err: err.message }, 'recipient look-up failed')
            cb(new Reply(451, '4.3.0 Temporary failure; try again later'))
          },
        )
      },
      onData: (stream, session, cb) =>
        this.receive(stream, session).then(
          (text) => cb(null, text),
          (err) => {
            if (err instanceof Reply) return cb(err)
            this.logger.error({ err }, 'inbound message not stored')
            cb(new Reply(451, '4.3.0 Temporary failure; try again later'))
          },
        ),
    }
    // No address holds more than its share of connections, and every connection must name
    // one of our mailboxes soon, finish in time and send its message at a minimum rate.
    const server = new LimitedSMTPServer(options, {
      limits: {
        maxConnectionsPerAddress: s.maxConnectionsPerAddress,
        establishTimeout: s.recipientTimeout,
        maxSessionLength: s.maxSessionLength,
        minDataRate: s.minDataRate,
        dataRateWindow: s.dataRateWindow,
        maxMessagesPerAddress: s.maxMessagesPerAddress,
        messageRateWindow: s.messageRateWindow,
      },
      establishedBy: 'rcpt',
      authAfterTls: false,
      onLimit: (event) => {
        this.metrics.refused.inc({ reason: event.reason })
        // A flood from one address is logged once, when it reaches its limit.
        if (event.first)
          this.logger.info({ ip: event.address, key: event.key, reason: event.reason }, 'inbound connection limit')
      },
    })
    server.on('error', (err) => this.logger.debug({ err: err.message }, 'inbound connection error'))
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject)
      server.listen(s.port, s.host, () => {
        server.server.off('error', reject)
        resolve()
      })
    })
    this.server = server
    const bound = server.server.address()
    this.address = { host: s.host, port: typeof bound === 'object' && bound ? bound.port : s.port }
    this.logger.info({ smtp: `${this.address.host}:${this.address.port}`, starttls: !!tls }, 'inbound smtp listening')
  }

  private async receive(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const max = this.ctx.config.fblIngest.smtp.maxSize
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length
      // Past the limit the rest is read and dropped, so the refusal comes after the end of DATA.
      if (size <= max) chunks.push(chunk)
    }
    if (stream.sizeExceeded || size > max) {
      this.metrics.refused.inc({ reason: 'oversize' })
      throw new Reply(552, `5.3.4 Message size exceeds the limit of ${max} bytes`)
    }
    const raw = Buffer.concat(chunks, size)
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : ''
    const rcptTo = session.envelope.rcptTo.map((r) => r.address.toLowerCase())
    const cfg = this.ctx.config.fblIngest
    // Operator mail is checked to decide on forwarding it; a DMARC report to tell the member
    // whether the receiver it names really sent it (reports are otherwise anyone's claim).
    const checkAuth = rcptTo.some((r) => {
      const checked = checkRecipient(r, this.policy!)
      return 'kind' in checked && (checked.kind === 'operator' || checked.kind === 'dmarc')
    })
    // Replies to members' domains are authenticated (and ARC-sealed) when they are forwarded.
    const toMembers = rcptTo.length > 0 && !atPoolDomain(rcptTo[0]!, this.policy!)
    const auth = checkAuth
      ? await authenticateReceipt(raw, {
          ip: session.remoteAddress,
          helo: session.hostNameAppearsAs || '',
          mailFrom,
          mta: this.mta,
          resolver: this.resolver!,
          timeoutMs: cfg.authTimeout,
        })
      : null
    const id = await storeInbound(
      this.ctx.db,
      {
        remoteAddress: session.remoteAddress || null,
        heloName: session.hostNameAppearsAs || null,
        mailFrom,
        rcptTo,
        auth,
        ...(toMembers ? { kind: 'reply' as const } : {}),
      },
      raw,
    )
    this.metrics.accepted.inc()
    this.logger.info(
      {
        inboundId: id,
        size,
        from: mailFrom,
        ip: session.remoteAddress,
        ...(auth ? { dmarc: auth.dmarc } : {}),
        ...(toMembers ? { reply: true } : {}),
      },
      'inbound message stored',
    )
    // Stored is durable: the reply is 250 even when Redis is down; the reconciler enqueues it.
    await withTimeout(this.queue!.enqueue({ inboundId: id }, { jobId: inboundJobId(id) }), 1000, 'redis').catch(
      (err: Error) => this.logger.warn({ err: err.message, inboundId: id }, 'not enqueued; the reconciler will'),
    )
    return `2.0.0 Ok: stored as ${id}`
  }

  /** Connections open now from an address (its /64 for IPv6). */
  connectionsFrom(address: string): number {
    return this.server?.connectionsFrom(address) ?? 0
  }

  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
    await this.queue?.close()
    this.queue = undefined
  }
}
