import { type BaseContext, createBaseContext } from '@atmos/runtime'
import type { SchedulerConfig } from './config.ts'
import { Sweeper } from './sweep.ts'

/** Everything the scheduler needs, built once from its config. */
export type AppContext = BaseContext<SchedulerConfig> & { sweeper: Sweeper }

export function createContext(config: SchedulerConfig): AppContext {
  const base = createBaseContext('scheduler', config)
  const sweeper = new Sweeper({
    db: base.db,
    logger: base.logger,
    registry: base.metrics,
    redisUrl: config.redis.url,
    prefix: config.redis.prefix,
    intervalMs: config.scheduler.reverifyInterval,
    rate: config.scheduler.verifyRate,
  })
  return { ...base, sweeper }
}
