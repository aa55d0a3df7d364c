import { type BaseContext, createBaseContext } from '@atmos/runtime'
import type { LabelerConfig } from './config.ts'

/** Everything the labeler needs, built once from its config. */
export type AppContext = BaseContext<LabelerConfig>

export function createContext(config: LabelerConfig): AppContext {
  return createBaseContext('labeler', config)
}
