import { type BaseContext, createBaseContext } from '@atmos/runtime'
import type { RelayConfig } from './config.ts'

/** Everything the relay needs, built once from its config. */
export type AppContext = BaseContext<RelayConfig>

export function createContext(config: RelayConfig): AppContext {
  return createBaseContext('relay', config)
}
