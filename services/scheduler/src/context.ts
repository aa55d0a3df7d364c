import { type BaseContext, createBaseContext } from '@atmos/runtime'
import type { SchedulerConfig } from './config.ts'
import { Sweeper } from './sweep.ts'

/** Everything the scheduler needs, built once from its config. */
export type AppContext = BaseContext<SchedulerConfig> & { sweeper: Sweeper }

export function createContext(config: SchedulerConfig): AppContext {
  // Readiness: the scheduler serves nothing; its one job (ticking the re-verification
  // sweep, enqueueing verify jobs) needs Postgres and Redis, so both are required.
  const base = createBaseContext('scheduler', config, { redisRequired: true })
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
