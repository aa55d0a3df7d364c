import { X509Certificate } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { SigningKeys } from '@atmos/dkim'
import { deliverMessage, TypedQueue } from '@atmos/queues'
import { type BaseContext, withTimeout } from '@atmos/runtime'
import { loadKeyring, readSecretFile } from '@atmos/secrets'
import { type LimitEvent, LimitedSMTPServer } from '@atmos/smtp-limits'
import type { SMTPServerOptions } from 'smtp-server'
import { KeyRateLimit } from '../api/rate-limit.ts'
import { SendHandler } from '../api/send.ts'
import { SendApiServer } from '../api/server.ts'
import type { RelayConfig } from '../config.ts'
import { SubmissionPolicy } from './accept.ts'
import { AuthGuard } from './auth-guard.ts'
import { MemberConnections } from './member-connections.ts'
import { type SubmissionMetrics, submissionMetrics } from './metrics.ts'
import { Reply, SubmissionHandlers } from './session.ts'
import { ThrottleRules } from './throttle.ts'

/**
 * Submission for members: SMTP (587, and 465 when configured) and the HTTP send API (when
 * enabled), both through one SubmissionPolicy that accepts, signs and spools mail.
 */
export class Submission {
  readonly ctx: BaseContext<RelayConfig>
  readonly metrics: SubmissionMetrics
  private servers: LimitedSMTPServer[] = []
  private deliveries: TypedQueue<typeof deliverMessage> | undefined
  private api: SendApiServer | undefined
  /** Where each server listens, once started (port 0 in tests picks a free one). */
  readonly addresses: {
    starttls?: { host: string; port: number }
    implicitTls?: { host: string; port: number }
    api?: { host: string; port: number }
  } = {}

  /** Spike and spray rules, checked at each RCPT. */
  readonly throttle: ThrottleRules

  constructor(ctx: BaseContext<RelayConfig>) {
    this.ctx = ctx
    this.metrics = submissionMetrics(ctx.metrics)
    this.throttle = new ThrottleRules({
      sql: ctx.db.$client,
      config: ctx.config.relay.throttle,
      logger: ctx.logger,
      metrics: ctx.metrics,
    })
  }

  async start(): Promise<void> {
    const { config, logger } = this.ctx
    const sub = config.relay.submission
    // Files first: a missing certificate or secret fails start-up (retried, not ready) with the path named.
    const tls = { key: readFileSync(sub.tlsKeyFile), cert: readFileSync(sub.tlsCertFile) }
    // The certificate is read once: the one being served is the one whose expiry matters.
    this.metrics.tlsCertExpiry.set(Date.parse(new X509Certificate(tls.cert).validTo) / 1000)
    const keyring = loadKeyring(config.relay.kekFile)
    // Submission signs as members and as the pool, so it holds both KEKs. A deployment from
    // before the pool had a KEK of its own has no such file yet: its pool key, still sealed
    // under the relay's KEK, opens with that one until `relay keys reseal-pool`.
    const poolKekFile = config.relay.pool.kekFile
    const poolKeyring = existsSync(poolKekFile) ? loadKeyring(poolKekFile) : undefined
    if (!poolKeyring) logger.warn({ poolKekFile }, 'no pool KEK file: run relay keys reseal-pool')
    const tokenSecret = readSecretFile(config.relay.pool.tokenSecretFile)
    this.deliveries = new TypedQueue(deliverMessage, this.ctx.redis, config.redis.prefix)
    const sql = this.ctx.db.$client
    const policy = new SubmissionPolicy({
      config: sub,
      sql,
      logger,
      keys: new SigningKeys(sql, { members: keyring, pool: poolKeyring }),
      deliveries: this.deliveries,
      metrics: this.metrics,
      pool: config.relay.pool,
      tokenSecret,
      throttle: this.throttle,
    })
    const handlers = new SubmissionHandlers({
      config: sub,
      sql,
      logger,
      policy,
      guard: new AuthGuard({
        redis: this.ctx.redis,
        prefix: config.redis.prefix,
        limit: sub.authFailureLimit,
        concurrency: sub.authConcurrencyPerIp,
        windowMs: sub.authFailureWindow,
        leaseMs: sub.authCheckLease,
        onRedisError: (err) => logger.warn({ err: err.message }, 'auth back-off unavailable (redis)'),
      }),
      memberConnections: new MemberConnections({
        redis: this.ctx.redis,
        prefix: config.redis.prefix,
        // Renewed every third of it while the connection is open; a dead replica's slots lapse.
        leaseMs: Math.max(30_000, sub.socketTimeout),
        onRedisError: (err) => logger.warn({ err: err.message }, 'member connection count unavailable (redis)'),
      }),
      metrics: this.metrics,
    })

    const options = (secure: boolean): SMTPServerOptions => ({
      ...tls,
      secure,
      name: sub.hostname,
      size: sub.maxSize,
      authMethods: ['PLAIN', 'LOGIN'],
      authRequiredMessage: '5.7.0 Authentication required',
      disableReverseLookup: true,
      // REQUIRETLS (RFC 8689) is honoured: the message is flagged and delivery insists on it.
      hideREQUIRETLS: false,
      maxClients: sub.maxClients,
      socketTimeout: sub.socketTimeout,
      closeTimeout: 5000,
      logger: false,
      onAuth: (auth, session, cb) =>
        handlers.onAuth(auth, session).then(
          (r) => cb(null, r),
          (err) => cb(asReply(err, logger)),
        ),
      onMailFrom: (address, session, cb) =>
        handlers.onMailFrom(address, session).then(
          () => cb(),
          (err) => cb(asReply(err, logger)),
        ),
      onRcptTo: (address, session, cb) =>
        handlers.onRcptTo(address, session).then(
          () => cb(),
          (err) => cb(asReply(err, logger)),
        ),
      onData: (stream, session, cb) =>
        handlers.onData(stream, session).then(
          (msg) => cb(null, msg),
          (err) => cb(asReply(err, logger)),
        ),
      onClose: (session) => handlers.onClose(session),
    })

    const limits = {
      maxConnectionsPerAddress: sub.maxConnectionsPerAddress,
      establishTimeout: sub.loginTimeout,
      maxSessionLength: sub.maxSessionLength,
      minDataRate: sub.minDataRate,
      dataRateWindow: sub.dataRateWindow,
    }
    const onLimit = (event: LimitEvent) => {
      this.metrics.refused.inc({ reason: event.reason === 'auth_before_tls' ? 'no_tls' : event.reason })
      // A flood from one address is logged once, when it reaches its limit.
      if (event.first)
        logger.info({ ip: event.address, key: event.key, reason: event.reason }, 'submission connection limit')
    }
    const listen = async (secure: boolean, port: number) => {
      // AUTH is neither advertised nor accepted before TLS: 530 5.7.0, no password prompt.
      const server = new LimitedSMTPServer(options(secure), {
        limits,
        establishedBy: 'auth',
        authAfterTls: true,
        onLimit,
      })
      server.on('error', (err) => logger.warn({ err: err.message }, 'submission connection error'))
      await new Promise<void>((resolve, reject) => {
        server.server.once('error', reject)
        server.listen(port, sub.host, () => {
          server.server.off('error', reject)
          resolve()
        })
      })
      this.servers.push(server)
      const address = server.server.address()
      return { host: sub.host, port: typeof address === 'object' && address ? address.port : port }
    }
    this.addresses.starttls = await listen(false, sub.port)
    logger.info(
      { smtp: `${this.addresses.starttls.host}:${this.addresses.starttls.port}` },
      'submission listening (STARTTLS)',
    )
    if (sub.tlsPort) {
      this.addresses.implicitTls = await listen(true, sub.tlsPort)
      logger.info(
        { smtps: `${this.addresses.implicitTls.host}:${this.addresses.implicitTls.port}` },
        'submission listening (implicit TLS)',
      )
    }
    await this.startApi(policy)
  }

  /** The HTTP send API beside SMTP, on its own port, through the same policy. */
  private async startApi(policy: SubmissionPolicy): Promise<void> {
    const { config, logger } = this.ctx
    const api = config.relay.api
    if (!api.enabled) return
    const sql = this.ctx.db.$client
    const handler = new SendHandler({
      api,
      sql,
      logger,
      policy,
      rateLimit: new KeyRateLimit({
        redis: this.ctx.redis,
        prefix: config.redis.prefix,
        limit: api.rateLimit,
        windowMs: api.rateWindow,
        onRedisError: (err) => logger.debug({ err: err.message }, 'send API rate count unavailable (redis)'),
      }),
      maxRecipients: config.relay.submission.maxRecipients,
      maxSize: config.relay.submission.maxSize,
    })
    this.api = new SendApiServer()
    await this.api.start({
      config: api,
      handler,
      logger,
      sql,
      maxRecipients: config.relay.submission.maxRecipients,
      answers: this.metrics.apiAnswers,
    })
    this.addresses.api = this.api.address
  }

  /** Connections open now from an address (its /64 for IPv6), on every port. */
  connectionsFrom(address: string): number {
    return this.servers.reduce((n, s) => n + s.connectionsFrom(address), 0)
  }

  async stop(): Promise<void> {
    const servers = this.servers
    this.servers = []
    const api = this.api
    this.api = undefined
    await api?.stop()
    // close() stops accepting and waits for open connections (closeTimeout at most).
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))))
    // bullmq waits for its connection before closing; with Redis down that is forever.
    const deliveries = this.deliveries
    this.deliveries = undefined
    if (deliveries) await withTimeout(deliveries.close(), 2000, 'redis').catch(() => {})
  }
}

/** A refusal goes to the client as is; anything else is logged and answered 451 without details. */
function asReply(err: unknown, logger: BaseContext['logger']): Error {
  if (err instanceof Reply) return err
  // The client went away in the middle of its message (or a limit closed the connection).
  if ((err as { code?: unknown })?.code === 'ECONNECTION') return new Reply(421, '4.4.2 Connection closed', 'internal')
  logger.error({ err }, 'submission failed')
  return new Reply(451, '4.3.0 Temporary failure; try again later', 'internal')
}
