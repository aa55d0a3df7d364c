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
  const base = createBaseContext('fbl-ingest', config, opts)
  const roles = new Set(config.fblIngest.roles)
  const fblMetrics = createFblMetrics(base.metrics)
  registerPoolGauges(base.metrics, base.db, base.logger)
  return {
    ...base,
    fblMetrics,
    listener: roles.has('smtp') ? new InboundListener(base, fblMetrics) : undefined,
    workers: roles.has('worker') ? new InboundWorkers(base, fblMetrics) : undefined,
  }
}
