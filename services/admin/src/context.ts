import { type BaseContext, createBaseContext } from '@atmos/runtime'
import type { AdminConfig } from './config.ts'

/** Everything the admin needs, built once from its config. */
export type AppContext = BaseContext<AdminConfig>

export function createContext(config: AdminConfig): AppContext {
  // Readiness is "can serve its web endpoint", which reads and writes Postgres alone;
  // a Redis outage shows as degraded.
  return createBaseContext('admin', config, { redisRequired: false })
}
