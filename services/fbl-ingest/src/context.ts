import { type BaseContext, createBaseContext } from '@atmos/runtime'
import type { FblIngestConfig } from './config.ts'

/** Everything the fbl-ingest needs, built once from its config. */
export type AppContext = BaseContext<FblIngestConfig>

export function createContext(config: FblIngestConfig): AppContext {
  return createBaseContext('fbl-ingest', config)
}
