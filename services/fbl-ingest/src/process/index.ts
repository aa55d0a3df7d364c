import { getServers } from 'node:dns'
import { SigningKeys } from '@atmos/dkim'
import {
  createRedis,
  createWorker,
  deliverMessage,
  memberStatusChanged,
  processInbound,
  TypedQueue,
  type Worker,
} from '@atmos/queues'
import { republishStatusChanges } from '@atmos/reputation'
import type { BaseContext, Logger } from '@atmos/runtime'
import { loadKeyring } from '@atmos/secrets'
import { createDnsResolver } from '@atmos/verify'
import type { Redis } from 'ioredis'
import type { FblIngestConfig } from '../config.ts'
import { poolIpMatcher } from '../dmarc/pool-ips.ts'
import { purgeDmarcReports } from '../dmarc/retention.ts'
import { reverseNames } from '../dmarc/reverse.ts'
import { ReplyForwarder } from '../forwarding/forward-reply.ts'
import type { FblMetrics } from '../metrics.ts'
import type { PoolIdentity } from '../pool.ts'
import { dnsResolver } from '../smtp/authenticate.ts'
import { InboundProcessor } from './processor.ts'
import { InboundReconciler, purgeRawInbound } from './reconciler.ts'

/** The process-inbound workers and their reconciler. */
export class InboundWorkers {
  private readonly ctx: BaseContext<FblIngestConfig>
  private readonly metrics: FblMetrics
  private readonly logger: Logger
  private queues: TypedQueue<never>[] = []
  private worker: Worker | undefined
  private workerRedis: Redis | undefined
  private reconciler: InboundReconciler | undefined
  processor: InboundProcessor | undefined

  constructor(ctx: BaseContext<FblIngestConfig>, metrics: FblMetrics) {
    this.ctx = ctx
    this.metrics = metrics
    this.logger = ctx.logger.child({ concern: 'process' })
  }

  async start(pool: PoolIdentity): Promise<void> {
    const { config, redis, db } = this.ctx
    const cfg = config.fblIngest
    const prefix = config.redis.prefix
    const inbound = new TypedQueue(processInbound, redis, prefix)
    const statusQueue = new TypedQueue(memberStatusChanged, redis, prefix)
    const deliveries = new TypedQueue(deliverMessage, redis, prefix)
    this.queues = [inbound, statusQueue, deliveries] as unknown as TypedQueue<never>[]
    // The pool's key seals and signs forwards: only the pool's KEK, never the relay's (which
    // opens every member's key). Read at the first forward, so that a worker with nothing to
    // forward starts without it; a missing file fails that job (retried) with its path named.
    let poolKeys: SigningKeys | undefined
    const keys = () => {
      poolKeys ??= new SigningKeys(db.$client, { pool: loadKeyring(cfg.pool.kekFile) })
      return poolKeys
    }
    const replies = new ReplyForwarder({
      db,
      pool,
      keys,
      deliveries,
      logger: this.logger,
      resolver: dnsResolver(cfg.dnsServers, cfg.authTimeout, cfg.dnsPort),
      mta: cfg.smtp.hostname || pool.domain,
      authTimeoutMs: cfg.authTimeout,
      maxHops: cfg.forwarding.maxHops,
      perDomainPerHour: cfg.forwarding.perDomainPerHour,
    })
    const processor = new InboundProcessor({
      replies,
      db,
      pool,
      statusQueue,
      deliveries,
      metrics: this.metrics,
      logger: this.logger,
      operatorMailboxes: cfg.operatorMailboxes,
      operatorInbox: cfg.operatorInbox,
      forwardsPerHour: cfg.forwardsPerHour,
      // Forwards are signed as the pool: only the pool's KEK, never the relay's (which opens
      // every member's key). A missing file fails start-up (retried, not ready) with its path named.
      keys: cfg.operatorInbox ? keys() : undefined,
      bounceSuppressionMs: cfg.bounceSuppression,
      thresholds: cfg.thresholds,
      providers: cfg.feedbackProviders,
      // The reports' DKIM keys and SPF records: the only DNS this process asks.
      reportResolver: createDnsResolver({
        servers: cfg.dnsServers.length ? cfg.dnsServers : getServers().length ? getServers() : ['127.0.0.1'],
        port: cfg.dnsPort || undefined,
        timeoutMs: cfg.dnsTimeout,
        tries: 2,
      }).resolve,
      dnsTimeoutMs: cfg.dnsTimeout,
      dmarc: cfg.dmarc.mailbox
        ? {
            mailbox: cfg.dmarc.mailbox,
            limits: cfg.dmarc,
            isPool: poolIpMatcher(cfg.dmarc.poolIps),
            // The same resolvers as the reports' checks; the machine's own when none are configured.
            reverse: reverseNames({
              servers: cfg.dnsServers,
              port: cfg.dnsPort || undefined,
              timeoutMs: cfg.dmarc.reverseTimeout,
              perReport: cfg.dmarc.reverseLookups,
            }),
          }
        : undefined,
    })
    this.processor = processor
    // A worker blocks on its connection: it gets one of its own.
    this.workerRedis = createRedis(config.redis.url)
    this.workerRedis.on('error', () => {})
    this.worker = createWorker(
      processInbound,
      this.workerRedis,
      prefix,
      async (payload) => processor.process(payload.inboundId),
      { concurrency: cfg.worker.concurrency },
    )
    this.worker.on('failed', (job, err) =>
      this.logger.warn({ jobId: job?.id, err: err.message }, 'inbound processing failed; retried'),
    )
    this.reconciler = new InboundReconciler({
      db,
      queue: inbound,
      intervalMs: cfg.worker.reconcileInterval,
      logger: this.logger,
      tasks: [
        // Status changes whose member-status-changed event never reached Redis.
        { name: 'status events re-sent', run: () => republishStatusChanges(db, statusQueue) },
        // Members whose enforcement a crash may have skipped (two intervals of events, to overlap).
        { name: 'reputation re-checked', run: () => processor.recheckRecent(2 * cfg.worker.reconcileInterval) },
        // Raw mail (reports quote recipients' messages) is kept only as long as it is useful.
        ...(cfg.rawRetention > 0
          ? [{ name: 'raw inbound purged', run: () => purgeRawInbound(db, cfg.rawRetention) }]
          : []),
        ...(cfg.dmarc.retention > 0
          ? [{ name: 'old DMARC reports deleted', run: () => purgeDmarcReports(db, cfg.dmarc.retention) }]
          : []),
      ],
    })
    await this.reconciler.start()
    this.logger.info({ concurrency: cfg.worker.concurrency }, 'inbound workers started')
  }

  async stop(): Promise<void> {
    await this.worker?.close()
    await this.reconciler?.stop()
    await Promise.all(this.queues.map((q) => q.close()))
    await this.workerRedis?.quit().catch(() => this.workerRedis?.disconnect())
    this.worker = undefined
    this.reconciler = undefined
    this.queues = []
    this.workerRedis = undefined
  }
}
