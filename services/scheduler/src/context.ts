import { type BaseContext, createBaseContext } from '@atmos/runtime'
import type { SchedulerConfig } from './config.ts'

/** Everything the scheduler needs, built once from its config. */
export type AppContext = BaseContext<SchedulerConfig>

export function createContext(config: SchedulerConfig): AppContext {
  return createBaseContext('scheduler', config)
}
