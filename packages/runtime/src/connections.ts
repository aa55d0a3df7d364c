import type { BaseConfig } from '@atmos/config'
import { createDb, type Db, pingDb } from '@atmos/db'
import { createRedis } from '@atmos/queues'
import type { Redis } from 'ioredis'

export function connectDb(service: string, config: BaseConfig): Db {
  return createDb({
    url: config.database.url,
    poolMax: config.database.poolMax,
    connectTimeout: config.database.connectTimeout,
    applicationName: `atmos-${service}`,
  })
}

/**
 * A Redis connection that does not block start-up when Redis is down: commands queue
 * while ioredis reconnects, and readiness reports the outage.
 */
export function connectRedis(config: BaseConfig): Redis {
  return createRedis(config.redis.url, { connectionName: 'atmos' })
}

/** Rejects after `ms` milliseconds, so that a probe answers even when a peer hangs. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(Object.assign(new Error(`${what} did not answer within ${ms} ms`), { code: 'ETIMEDOUT' })),
      ms,
    )
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * How long /readyz waits for any one check. Every orchestrator probe's own timeout must be
 * longer (infra/test/k8s.test.ts reads this figure), or a slow answer counts as a failure.
 */
export const CHECK_TIMEOUT_MS = 2000

export type DependencyCheck = {
  name: string
  check: () => Promise<void>
  /**
   * false: what this process serves does not need it. Its failure shows (/readyz answers
   * 200 with status "degraded" and names it; atmos_readiness_check is 0) but does not take
   * the process out of service. Required unless said otherwise.
   */
  required?: boolean
}

export function postgresCheck(db: Db, timeoutMs = CHECK_TIMEOUT_MS): DependencyCheck {
  return { name: 'postgres', check: () => withTimeout(pingDb(db), timeoutMs, 'postgres') }
}

export function redisCheck(redis: Redis, timeoutMs = CHECK_TIMEOUT_MS): DependencyCheck {
  return {
    name: 'redis',
    check: async () => {
      // While disconnected ioredis would queue the PING until it reconnects; wait for the
      // connection only as long as the probe may take, then report the outage.
      if (!(await waitForReady(redis, timeoutMs))) throw new Error(`redis connection is ${redis.status}`)
      const answer = await withTimeout(redis.ping(), timeoutMs, 'redis')
      if (answer !== 'PONG') throw new Error(`redis answered ${answer}`)
    },
  }
}

/** True once the connection is ready, false if it is not within `ms`; leaves no listener behind. */
export function waitForReady(redis: Redis, ms: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true)
  return new Promise((resolve) => {
    const finish = (ready: boolean) => {
      clearTimeout(timer)
      redis.off('ready', onReady)
      resolve(ready)
    }
    const onReady = () => finish(true)
    const timer = setTimeout(() => finish(redis.status === 'ready'), ms)
    redis.on('ready', onReady)
  })
}
