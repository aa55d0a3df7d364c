import { type BaseContext, createBaseContext } from '@atmos/runtime'
import type { AdminConfig } from './config.ts'

/** Everything the admin needs, built once from its config. */
export type AppContext = BaseContext<AdminConfig>

export function createContext(config: AdminConfig): AppContext {
  return createBaseContext('admin', config)
}
