import { loadSigningKeyFile } from '@atmos/labels'
import { type BaseContext, type Clock, createBaseContext, systemClock } from '@atmos/runtime'
import type { VerifyDeps } from '@atmos/verify'
import { Counter, Gauge, Histogram } from 'prom-client'
import type { LabelerConfig } from './config.ts'
import { Ingester } from './ingest/ingester.ts'
import { type ExpiryPolicy, LabelManager } from './labels/manager.ts'
import { LabelQueueWorkers } from './labels/queue-workers.ts'
import { LabelStream } from './labels/stream.ts'
import { type LabelSigner, LabelWriter, type StoredLabel } from './labels/writer.ts'
import { createVerifyDeps } from './verify/deps.ts'
import { DidBudget } from './verify/did-budget.ts'
import { VerifyWorker } from './verify/worker.ts'

export type LabelerMetrics = ReturnType<typeof createMetrics>

/** Everything the labeler needs, built once from its config. */
export type AppContext = BaseContext<LabelerConfig> & {
  signer: LabelSigner
  labelWriter: LabelWriter
  labelStream: LabelStream
  /** Absent when this replica only serves reads (ingest.source none). */
  ingester: Ingester | undefined
  labelManager: LabelManager
  verifyWorker: VerifyWorker
  labelQueueWorkers: LabelQueueWorkers
  labelerMetrics: LabelerMetrics
  /** Test hooks of the query path (see ContextOptions). */
  afterPageQuery: (() => Promise<void>) | undefined
}

function createMetrics(ctx: BaseContext<LabelerConfig>) {
  const registers = [ctx.metrics]
  return {
    labelsEmitted: new Counter({
      name: 'atmos_labeler_labels_emitted_total',
      help: 'Labels written, by value and whether they negate',
      labelNames: ['val', 'neg'],
      registers,
    }),
    subscribers: new Gauge({
      name: 'atmos_labeler_subscribers',
      help: 'subscribeLabels connections open now',
      registers,
    }),
    labelsRenewed: new Counter({
      name: 'atmos_labeler_labels_renewed_total',
      help: 'Held labels re-emitted only to extend their expiry, by value',
      labelNames: ['val'],
      registers,
    }),
    subscribersClosed: new Counter({
      name: 'atmos_labeler_subscribers_closed_total',
      help: 'subscribeLabels connections closed, by reason (too_slow: ConsumerTooSlow)',
      labelNames: ['reason'],
      registers,
    }),
    queryLabelsSeconds: new Histogram({
      name: 'atmos_labeler_query_labels_seconds',
      help: 'queryLabels database time',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
  }
}

export type ContextOptions = {
  /** Time for labels, expiry and grace periods; tests move it by days. */
  clock?: Clock
  /**
   * Wraps the resolvers the verify worker uses: a test holds a verification at a known
   * point (a DNS answer it releases) to race it deterministically against an event.
   */
  wrapVerifyDeps?: (deps: VerifyDeps) => VerifyDeps
  /**
   * Awaited between a queryLabels page's query and its offer to the cache: a test lands a
   * label change exactly there, the race the page cache must not lose.
   */
  afterPageQuery?: () => Promise<void>
}

/** The lifetime of positive labels and when they are renewed, from config. */
export function expiryPolicy(config: LabelerConfig): ExpiryPolicy {
  const { reverifyInterval, expiry } = config.labeler.labels
  return {
    ttlMs: expiry || 2 * reverifyInterval + config.labeler.verify.gracePeriod,
    renewWithinMs: reverifyInterval,
  }
}

export async function createContext(config: LabelerConfig, opts: ContextOptions = {}): Promise<AppContext> {
  const clock = opts.clock ?? systemClock
  // Readiness is "can serve labels": queryLabels and subscribeLabels read Postgres alone.
  // Ingest and verification need Redis too, but they wait out an outage and catch up
  // (cursors, the reconciler), so a Redis outage shows as degraded without taking the
  // XRPC endpoint out of service.
  const base = createBaseContext('labeler', config, { redisRequired: false })
  const keypair = await loadSigningKeyFile(config.labeler.signingKeyFile).catch((err: Error) => {
    throw new Error(`${err.message} (create one with: labeler init)`)
  })
  const signer: LabelSigner = { keypair, src: config.labeler.did || keypair.did() }
  const labelerMetrics = createMetrics(base)
  const labelWriter = new LabelWriter(base.db, signer, clock)
  // Counted where each transaction that wrote labels has committed.
  const onLabels = (emitted: StoredLabel[]) => {
    for (const l of emitted) {
      labelerMetrics.labelsEmitted.inc({ val: l.val, neg: String(l.neg === true) })
      if (l.renewed) labelerMetrics.labelsRenewed.inc({ val: l.val })
    }
  }
  const labelManager = new LabelManager(base.db, labelWriter, expiryPolicy(config), config.labeler.cleanSender)
  const ingest = config.labeler.ingest
  const ingester =
    ingest.source === 'none'
      ? undefined
      : new Ingester({
          db: base.db,
          redis: base.redis,
          redisPrefix: config.redis.prefix,
          labels: labelManager,
          logger: base.logger,
          registry: base.metrics,
          onLabels,
          options: {
            source: ingest.source,
            jetstreamUrl: ingest.jetstreamUrl,
            firehoseUrl: ingest.firehoseUrl,
            plcUrl: config.labeler.verify.plcUrl,
            rewindMs: ingest.rewind,
            reconnectMinMs: ingest.reconnectMin,
            reconnectMaxMs: ingest.reconnectMax,
            cursorFlushMs: ingest.cursorFlushInterval,
            reconcileMs: ingest.reconcileInterval,
            maxRecordsPerDid: ingest.maxRecordsPerDid,
          },
        })
  const v = config.labeler.verify
  const verifyWorker = new VerifyWorker({
    db: base.db,
    deps: (opts.wrapVerifyDeps ?? ((d) => d))(createVerifyDeps(config)),
    manager: labelManager,
    logger: base.logger,
    registry: base.metrics,
    redisUrl: config.redis.url,
    prefix: config.redis.prefix,
    concurrency: v.concurrency,
    gracePeriodMs: v.gracePeriod,
    retry: { minMs: v.retryMin, maxMs: v.retryMax },
    clock,
    onLabels,
    budget: new DidBudget({
      redis: base.redis,
      prefix: config.redis.prefix,
      windowMs: v.budgetWindow,
      limits: { network: v.networkRunsPerWindow, admin: v.adminRunsPerWindow },
      clock,
    }),
  })
  const labelQueueWorkers = new LabelQueueWorkers({
    redisUrl: config.redis.url,
    prefix: config.redis.prefix,
    manager: labelManager,
    logger: base.logger,
    onLabels,
  })
  return {
    ...base,
    signer,
    labelWriter,
    ingester,
    labelManager,
    verifyWorker,
    labelQueueWorkers,
    labelStream: new LabelStream(base.db, base.logger, {
      maxBuffer: config.labeler.subscribe.maxBuffer,
      pageSize: config.labeler.subscribe.backfillPageSize,
    }),
    labelerMetrics,
    afterPageQuery: opts.afterPageQuery,
  }
}
