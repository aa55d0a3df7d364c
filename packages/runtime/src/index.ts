export { Batcher } from './batch.ts'
export { type Clock, systemClock } from './clock.ts'
export {
  CHECK_TIMEOUT_MS,
  connectDb,
  connectRedis,
  type DependencyCheck,
  postgresCheck,
  redisCheck,
  withTimeout,
} from './connections.ts'
export { type BaseContext, type BaseContextOptions, closeBaseContext, createBaseContext } from './context.ts'
export { describeError, errorFields, isNetworkError, retryLogLevel, urlTarget } from './dependency-error.ts'
export {
  baseDependencyWatch,
  DependencyWatch,
  postgresProbe,
  redisProbe,
  WATCH_INTERVAL_MS,
  type WatchedDependency,
} from './dependency-watch.ts'
export { logQueueErrors, routeProcessOutput } from './json-output.ts'
export { createLogger, type Logger, REDACTED_KEYS } from './logger.ts'
export { type MainOptions, runMain, type Service } from './main.ts'
export { createMetricsRegistry } from './metrics.ts'
export { OpsServer, type OpsServerOptions } from './ops-server.ts'
export { BaseService } from './service.ts'
