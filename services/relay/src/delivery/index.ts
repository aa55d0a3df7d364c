import { getServers } from 'node:dns'
import { readFileSync } from 'node:fs'
import { createSecureContext, rootCertificates } from 'node:tls'
import { SigningKeys } from '@atmos/dkim'
import { createRedis, createWorker, deliverMessage, TypedQueue, type Worker } from '@atmos/queues'
import type { BaseContext, Logger } from '@atmos/runtime'
import { loadKeyring } from '@atmos/secrets'
import { createDnsResolver, createSecureDnsResolver } from '@atmos/verify'
import type { Redis } from 'ioredis'
import type { RelayConfig } from '../config.ts'
import { AddressPolicy } from './address-policy.ts'
import { BounceNotices } from './bounce-notice.ts'
import { RecipientDelivery } from './deliver-recipient.ts'
import { InFlight } from './in-flight.ts'
import { createDeliveryMetrics, type DeliveryMetrics } from './metrics.ts'
import { MxRouter } from './mx-routes.ts'
import { Reconciler } from './reconciler.ts'
import { isReputationDeferral } from './reputation.ts'
import { SiteConnections } from './site-connections.ts'
import { SiteLimiter } from './site-limiter.ts'
import { DeliverySpool } from './spool.ts'
import { MtaSts } from './tls/mta-sts.ts'
import { TlsPolicies } from './tls/policy.ts'

/** Delivery workers: spooled messages to recipients' MX hosts, shaped per MX site, retried. */
export class Delivery {
  readonly ctx: BaseContext<RelayConfig>
  readonly metrics: DeliveryMetrics
  readonly spool: DeliverySpool
  readonly limiter: SiteLimiter
  private readonly logger: Logger
  private queue: TypedQueue<typeof deliverMessage> | undefined
  private connections: SiteConnections | undefined
  private reconciler: Reconciler | undefined
  private worker: Worker | undefined
  private workerRedis: Redis | undefined
  private keys: SigningKeys | undefined
  private stopping = false

  constructor(ctx: BaseContext<RelayConfig>) {
    this.ctx = ctx
    const cfg = ctx.config.relay.delivery
    this.logger = ctx.logger.child({ concern: 'delivery' })
    this.metrics = createDeliveryMetrics(ctx.metrics)
    this.spool = new DeliverySpool({
      db: ctx.db,
      maxAgeMs: cfg.maxAge,
      suppressForMs: cfg.bounceSuppression,
    })
    this.limiter = new SiteLimiter({
      redis: ctx.redis,
      prefix: ctx.config.redis.prefix,
      leaseMs: cfg.shaping.slotLease,
      slowDown: {
        forMs: cfg.shaping.slowDownFor,
        connections: cfg.shaping.slowDownConnections,
        ratePerSecond: cfg.shaping.slowDownRate,
      },
    })
  }

  async start(): Promise<void> {
    this.stopping = false
    const { config } = this.ctx
    const cfg = config.relay.delivery
    const resolverOptions = {
      servers: cfg.dnsServers.length ? cfg.dnsServers : getServers().length ? getServers() : ['127.0.0.1'],
      port: cfg.dnsPort || undefined,
      timeoutMs: cfg.dnsTimeout,
      tries: cfg.dnsTries,
    }
    const dns = createDnsResolver(resolverOptions)
    const addressPolicy = new AddressPolicy(cfg.allowedPrivateNetworks)
    // Verified TLS trusts Node's CAs, plus the configured ones (never instead of them).
    const ca = cfg.tlsCaFile ? [...rootCertificates, readFileSync(cfg.tlsCaFile, 'utf8')] : undefined
    const tls = new TlsPolicies({
      logger: this.logger,
      cacheTtlMs: cfg.dnsCacheTtl,
      ...(cfg.dnssec ? { secureDns: createSecureDnsResolver(resolverOptions) } : {}),
      ...(cfg.mtaSts
        ? {
            mtaSts: new MtaSts({
              dns,
              redis: this.ctx.redis,
              prefix: config.redis.prefix,
              port: cfg.mtaStsPort,
              timeoutMs: cfg.mtaStsTimeout,
              ca,
              logger: this.logger,
              recheckMs: Math.min(cfg.dnsCacheTtl, 5 * 60_000),
              addressPolicy,
            }),
          }
        : {}),
    })
    const queue = new TypedQueue(deliverMessage, this.ctx.redis, config.redis.prefix)
    this.queue = queue
    const connections = new SiteConnections({
      limiter: this.limiter,
      logger: this.logger,
      connection: {
        port: cfg.mxPort,
        heloName: cfg.heloName || config.relay.pool.domain,
        connectTimeoutMs: cfg.connectTimeout,
        greetingTimeoutMs: cfg.greetingTimeout,
        socketTimeoutMs: cfg.socketTimeout,
        secureContext: ca ? createSecureContext({ ca }) : undefined,
      },
      idleTimeoutMs: cfg.shaping.idleTimeout,
      slotWaitMs: cfg.shaping.slotWait,
      slotLeaseMs: cfg.shaping.slotLease,
      isReputationDeferral: (result) => result.kind === 'reply' && isReputationDeferral(result.reply),
      onOpen: () => this.metrics.connectionsOpened.inc(),
    })
    this.connections = connections
    const recipients = new RecipientDelivery({
      spool: this.spool,
      router: new MxRouter({
        dns,
        cacheTtlMs: cfg.dnsCacheTtl,
        policy: addressPolicy,
      }),
      connections,
      queue,
      metrics: this.metrics,
      logger: this.logger,
      siteRules: cfg.shaping.sites,
      siteDefaults: {
        maxConnections: cfg.shaping.maxConnections,
        messagesPerConnection: cfg.shaping.messagesPerConnection,
      },
      retrySchedule: cfg.retrySchedule,
      claimLeaseMs: cfg.claimLease,
      tls,
      notices: cfg.bounceNotices
        ? new BounceNotices({
            // Notices are signed as the pool: only the pool's KEK, never the relay's (which opens
            // every member's key). It is read at the first notice (and again until it can be):
            // a missing file costs the notices, never the deliveries.
            keys: () => {
              this.keys ??= new SigningKeys(this.ctx.db.$client, { pool: loadKeyring(config.relay.pool.kekFile) })
              return this.keys
            },
            identity: { poolDomain: config.relay.pool.domain, reportingMta: cfg.heloName || config.relay.pool.domain },
          })
        : undefined,
    })

    const inFlight = new InFlight(cfg.concurrency)
    // A worker blocks on its connection: it gets one of its own.
    this.workerRedis = createRedis(config.redis.url)
    this.workerRedis.on('error', () => {})
    this.worker = createWorker(
      deliverMessage,
      this.workerRedis,
      config.redis.prefix,
      async (payload) => {
        // A job names one message (a retry names its recipient too) or several spooled
        // together. Claims made in the same turn share one statement (see DeliverySpool.claim).
        const wanted = payload.messageIds
          ? payload.messageIds.map((messageId) => ({ messageId, recipientIds: undefined }))
          : payload.messageId
            ? [{ messageId: payload.messageId, recipientIds: payload.recipientIds }]
            : []
        const counts = await Promise.all(
          wanted.map((w) => inFlight.run(() => this.deliverMessage(recipients, w.messageId, w.recipientIds))),
        )
        return { claimed: counts.reduce((a, b) => a + b, 0) }
      },
      { concurrency: cfg.concurrency, lockDuration: 30_000, stalledInterval: 15_000 },
    )
    this.worker.on('failed', (job, err) =>
      this.logger.warn({ jobId: job?.id, err: err.message }, 'delivery job failed; the reconciler will retry it'),
    )
    this.reconciler = new Reconciler({
      spool: this.spool,
      queue,
      intervalMs: cfg.reconcileInterval,
      logger: this.logger,
      metrics: this.metrics,
      bodyRetentionMs: cfg.bodyRetention,
    })
    this.reconciler.start()
    this.logger.info(
      { concurrency: cfg.concurrency, mxPort: cfg.mxPort, reconcileIntervalMs: cfg.reconcileInterval },
      'delivery workers started',
    )
  }

  /** Claims the message's due recipients (or only `ids`) and makes one attempt at each; how many it claimed. */
  private async deliverMessage(
    recipients: RecipientDelivery,
    messageId: string,
    ids: number[] | undefined,
  ): Promise<number> {
    // Stopping: a message of a batch job still waiting for its turn is left unclaimed, due in
    // Postgres, for the reconciler (of this process or another); only attempts begun finish.
    if (this.stopping) return 0
    const claim = await this.spool.claim(messageId, ids, this.ctx.config.relay.delivery.claimLease)
    if (!claim) return 0
    for (const r of claim.stopped) {
      this.metrics.stopped.inc()
      this.logger.info(
        { messageId: r.messageId, recipientId: r.id, state: 'failed', reason: r.reason },
        'not delivered: stopped by the relay',
      )
    }
    await Promise.all(claim.recipients.map((r) => recipients.deliver(claim.message, r, claim.now)))
    return claim.recipients.length
  }

  /** Finishes the attempts in progress, then closes every session; what is left waits in Postgres. */
  async stop(): Promise<void> {
    this.stopping = true
    await this.worker?.close()
    await this.reconciler?.stop()
    await this.connections?.close()
    await this.queue?.close()
    await this.workerRedis?.quit().catch(() => this.workerRedis?.disconnect())
    this.worker = undefined
    this.reconciler = undefined
    this.connections = undefined
    this.queue = undefined
    this.workerRedis = undefined
  }
}
