import { type BaseContext, createBaseContext, type Logger } from '@atmos/runtime'
import type { FblIngestConfig } from './config.ts'
import { createFblMetrics, type FblMetrics, registerPoolGauges } from './metrics.ts'
import { InboundWorkers } from './process/index.ts'
import { InboundListener } from './smtp/listener.ts'

/** Everything the fbl-ingest needs, built once from its config; each role only when this process runs it. */
export type AppContext = BaseContext<FblIngestConfig> & {
  fblMetrics: FblMetrics
  listener: InboundListener | undefined
  workers: InboundWorkers | undefined
}

export function createContext(config: FblIngestConfig, opts: { logger?: Logger } = {}): AppContext {
  const roles = new Set(config.fblIngest.roles)
  // Readiness is "can accept mail" where the process accepts it: the SMTP listener stores
  // each message in Postgres before its 250 and the reconciler enqueues it later, so a
  // process with the smtp role needs Postgres alone (a Redis outage shows as degraded and
  // keeps port 25 answering). A worker-only process needs Postgres and Redis.
  const base = createBaseContext('fbl-ingest', config, { ...opts, redisRequired: !roles.has('smtp') })
  const fblMetrics = createFblMetrics(base.metrics)
  registerPoolGauges(base.metrics, base.db, base.logger)
  return {
    ...base,
    fblMetrics,
    listener: roles.has('smtp') ? new InboundListener(base, fblMetrics) : undefined,
    workers: roles.has('worker') ? new InboundWorkers(base, fblMetrics) : undefined,
  }
}
