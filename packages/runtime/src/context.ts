import type { BaseConfig } from '@atmos/config'
import type { Db } from '@atmos/db'
import type { Redis } from 'ioredis'
import type { Registry } from 'prom-client'
import { connectDb, connectRedis, postgresCheck, redisCheck } from './connections.ts'
import { logQueueErrors } from './json-output.ts'
import { createLogger, type Logger } from './logger.ts'
import { createMetricsRegistry } from './metrics.ts'
import { OpsServer } from './ops-server.ts'

/** What every service's AppContext starts from; a service adds its own clients to it. */
export type BaseContext<C extends BaseConfig = BaseConfig> = {
  service: string
  config: C
  logger: Logger
  metrics: Registry
  db: Db
  redis: Redis
  ops: OpsServer
}

export type BaseContextOptions = {
  logger?: Logger
  /**
   * Whether this process can do the work it is sent without Redis (see each service's
   * context.ts for its rule). When it can, a Redis outage shows on /readyz as "degraded"
   * without taking the process out of service. Default: Redis is required.
   */
  redisRequired?: boolean
}

export function createBaseContext<C extends BaseConfig>(
  service: string,
  config: C,
  opts: BaseContextOptions = {},
): BaseContext<C> {
  const logger = opts.logger ?? createLogger(service, config.log.level)
  logQueueErrors(logger)
  const metrics = createMetricsRegistry(service)
  const db = connectDb(service, config)
  const redis = connectRedis(config)
  // ioredis reconnects by itself and would crash the process on an unheard 'error'. The
  // outage is said once by the service's dependency watch (dependency-watch.ts), not here
  // on every reconnection attempt.
  redis.on('error', (err: Error) => logger.debug({ err: err.message }, 'redis connection error'))
  const ops = new OpsServer({
    host: config.http.host,
    port: config.http.port,
    logger,
    metrics,
    checks: [postgresCheck(db), { ...redisCheck(redis), required: opts.redisRequired ?? true }],
  })
  return { service, config, logger, metrics, db, redis, ops }
}

/** Closes the shared clients; the last step of every service's destroy(). */
export async function closeBaseContext(ctx: BaseContext): Promise<void> {
  await ctx.ops.stop()
  await Promise.allSettled([ctx.db.$client.end({ timeout: 5 }), closeRedis(ctx.redis)])
}

/**
 * QUIT when Redis answers; otherwise (down, reconnecting) quit() would wait for a
 * reconnection that may never come and hold the shutdown past its timeout: disconnect.
 */
async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status !== 'ready') return redis.disconnect()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    redis.quit(),
    new Promise((resolve) => {
      timer = setTimeout(resolve, 2000)
    }),
  ])
    .catch(() => {})
    .finally(() => clearTimeout(timer))
  if ((redis.status as string) !== 'end') redis.disconnect()
}
