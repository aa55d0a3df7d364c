import type { BaseConfig } from '@atmos/config'
import { type Db, pingDb } from '@atmos/db'
import type { Redis } from 'ioredis'
import { CHECK_TIMEOUT_MS, withTimeout } from './connections.ts'
import { describeError, urlTarget } from './dependency-error.ts'
import type { Logger } from './logger.ts'

export type WatchedDependency = {
  /** postgres, redis */
  name: string
  /** host:port, never the URL (it may carry a password) */
  target: string
  /** Resolves when the dependency answers; rejects with the client's error when it does not. */
  probe: () => Promise<'ok' | 'unknown'>
}

/** How often each dependency is probed while all are up, and while one is down (to see it back soon). */
export const WATCH_INTERVAL_MS = 5000
export const WATCH_DOWN_INTERVAL_MS = 1000

/**
 * Says, once, when a dependency goes down and, once, when it is back. Each client retries by
 * itself (postgres.js on the next query, ioredis with its backoff) and the work that needs
 * it retries too; without this, a service whose dependency is down at start says only
 * "started", or repeats the same error on every retry. One JSON line names the dependency,
 * where it was sought and the error code (ECONNREFUSED…); readiness meanwhile fails by
 * its own checks.
 */
export class DependencyWatch {
  private readonly logger: Logger
  private readonly dependencies: WatchedDependency[]
  private readonly intervalMs: number
  private readonly downIntervalMs: number
  private stopped = false
  private readonly down = new Map<string, { since: number; code: string | undefined }>()
  private timer: NodeJS.Timeout | undefined
  private probing: Promise<void> | undefined

  constructor(opts: {
    logger: Logger
    dependencies: WatchedDependency[]
    intervalMs?: number
    downIntervalMs?: number
  }) {
    this.logger = opts.logger
    this.dependencies = opts.dependencies
    this.intervalMs = opts.intervalMs ?? WATCH_INTERVAL_MS
    this.downIntervalMs = Math.min(this.intervalMs, opts.downIntervalMs ?? WATCH_DOWN_INTERVAL_MS)
  }

  start(): void {
    this.stopped = false
    void this.tick()
  }

  private async tick(): Promise<void> {
    await this.probeAll()
    if (this.stopped) return
    this.timer = setTimeout(() => void this.tick(), this.down.size ? this.downIntervalMs : this.intervalMs)
    // Never the reason the process stays up.
    this.timer.unref()
  }

  /** Stops probing. A probe in flight is not waited for (a hung peer would hold the shutdown); its answer is ignored. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
  }

  /** Whether the dependency is known to be down now. */
  isDown(name: string): boolean {
    return this.down.has(name)
  }

  /** Names of the dependencies now down. */
  get failing(): string[] {
    return [...this.down.keys()]
  }

  /** Probes every dependency once (the timer does; tests may call it to avoid waiting). */
  probeAll(): Promise<void> {
    if (!this.probing) {
      this.probing = Promise.all(this.dependencies.map((d) => this.probeOne(d)))
        .then(() => undefined)
        .finally(() => {
          this.probing = undefined
        })
    }
    return this.probing
  }

  private async probeOne(dep: WatchedDependency): Promise<void> {
    let result: 'ok' | 'unknown'
    try {
      result = await dep.probe()
    } catch (err) {
      // The pools are closing under a probe that was in flight: not an outage.
      if (this.stopped) return
      const { code, message } = describeError(err)
      const known = this.down.get(dep.name)
      // A new error code is news (refused, then timing out); the same one again is a retry.
      if (known && known.code === code) return
      this.down.set(dep.name, { since: known?.since ?? Date.now(), code })
      this.logger.error(
        { dependency: dep.name, target: dep.target, code, err: message },
        `${dep.name} at ${dep.target} is unreachable${code ? ` (${code})` : ''}; retrying quietly, not ready meanwhile`,
      )
      return
    }
    if (result === 'unknown' || this.stopped) return
    const known = this.down.get(dep.name)
    if (!known) return
    this.down.delete(dep.name)
    this.logger.info(
      { dependency: dep.name, target: dep.target, downForMs: Date.now() - known.since },
      `${dep.name} at ${dep.target} is back`,
    )
  }
}

export function postgresProbe(db: Db): WatchedDependency['probe'] {
  return async () => {
    await withTimeout(pingDb(db), CHECK_TIMEOUT_MS, 'postgres')
    return 'ok'
  }
}

/**
 * ioredis reconnects by itself and queues commands meanwhile, so a PING would only wait:
 * while it is not connected, its last connection error is the answer. Before the first
 * attempt has either succeeded or failed nothing is known yet.
 */
export function redisProbe(redis: Redis): WatchedDependency['probe'] {
  let lastError: Error | undefined
  redis.on('error', (err: Error) => {
    lastError = err
  })
  redis.on('ready', () => {
    lastError = undefined
  })
  return async () => {
    if (redis.status === 'ready') {
      const answer = await withTimeout(redis.ping(), CHECK_TIMEOUT_MS, 'redis')
      if (answer !== 'PONG') throw new Error(`redis answered ${answer}`)
      return 'ok'
    }
    if (lastError) throw lastError
    return 'unknown'
  }
}

/** The watch over what every service shares: its Postgres and its Redis. */
export function baseDependencyWatch(
  ctx: { logger: Logger; db: Db; redis: Redis; config: BaseConfig },
  intervalMs?: number,
): DependencyWatch {
  return new DependencyWatch({
    logger: ctx.logger,
    intervalMs,
    dependencies: [
      { name: 'postgres', target: urlTarget(ctx.config.database.url, 5432), probe: postgresProbe(ctx.db) },
      { name: 'redis', target: urlTarget(ctx.config.redis.url, 6379), probe: redisProbe(ctx.redis) },
    ],
  })
}
