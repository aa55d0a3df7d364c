import { setTimeout as sleep } from 'node:timers/promises'
import type { BaseConfig } from '@atmos/config'
import { type BaseContext, closeBaseContext } from './context.ts'
import { describeError } from './dependency-error.ts'
import { baseDependencyWatch, type DependencyWatch } from './dependency-watch.ts'
import type { Logger } from './logger.ts'
import type { Service } from './main.ts'

const RETRY_MIN_MS = 500
const RETRY_MAX_MS = 15_000

/**
 * The lifecycle every service shares. The ops endpoint comes up first, so liveness
 * answers at once; the service's own work (which needs Postgres and Redis) then starts in
 * the background and is retried with backoff while a dependency is down, with /readyz
 * saying why. On destroy, readiness turns 503 before the work is drained and the pools
 * are closed. Services override startWork/stopWork.
 */
export abstract class BaseService<Ctx extends BaseContext<BaseConfig>> implements Service {
  readonly ctx: Ctx
  private started = false
  private stopping = false
  private startError = 'starting'
  private starting: Promise<void> | undefined
  private readonly stopSignal = new AbortController()
  private watch: DependencyWatch | undefined

  constructor(ctx: Ctx) {
    this.ctx = ctx
  }

  get logger(): Logger {
    return this.ctx.logger
  }

  /** Starts the service's own servers and workers; may throw to be retried. */
  protected async startWork(): Promise<void> {}

  /** Stops accepting new work and waits for in-flight work to finish. */
  protected async stopWork(): Promise<void> {}

  /** Resolves once the service's own work has started (for in-process use and tests). */
  async whenStarted(): Promise<void> {
    await this.starting
    if (!this.started) throw new Error(`not started: ${this.startError}`)
  }

  async start(): Promise<void> {
    this.ctx.ops.addCheck({
      name: 'service',
      check: async () => {
        if (!this.started) throw new Error(this.startError)
      },
    })
    await this.ctx.ops.start()
    this.watch = baseDependencyWatch(this.ctx)
    this.watch.start()
    this.starting = this.startWithRetry()
  }

  private async startWithRetry(): Promise<void> {
    let delay = RETRY_MIN_MS
    let attempts = 0
    let lastLogged: string | undefined
    while (!this.stopping) {
      attempts++
      try {
        await this.startWork()
        if (this.stopping) {
          // destroy() stopped waiting for this start-up: undo it here.
          await this.stopWork().catch(() => {})
          return
        }
        this.started = true
        this.logger.info(attempts > 1 ? { attempts } : {}, 'started')
        return
      } catch (err) {
        const { code, message } = describeError(err)
        this.startError = `start-up failed: ${message}`
        // The first failure, and each new reason, is logged; the same one again is a retry
        // (a dependency that is down is said once by the dependency watch).
        const level = message === lastLogged ? 'debug' : 'warn'
        lastLogged = message
        this.logger[level]({ err: message, code, retryInMs: delay }, 'start-up failed; retrying quietly')
        // Undo whatever half-started, so the next attempt starts clean.
        await this.stopWork().catch(() => {})
        await sleep(delay, undefined, { signal: this.stopSignal.signal }).catch(() => {})
        delay = Math.min(delay * 2, RETRY_MAX_MS)
        // Starting and undoing the work again while Postgres is down only churns connections
        // (and bullmq complains of each one closed under it): wait for the watch to see it back.
        while (!this.stopping && this.watch?.isDown('postgres')) {
          await sleep(RETRY_MIN_MS, undefined, { signal: this.stopSignal.signal }).catch(() => {})
        }
      }
    }
  }

  async destroy(): Promise<void> {
    this.stopping = true
    this.stopSignal.abort()
    this.ctx.ops.startDraining()
    await this.watch?.stop()
    try {
      // A start-up that waits on a dependency that is down (commands queue while Redis
      // reconnects) would hold the shutdown past its timeout: wait for it only half of it.
      await settlesWithin(this.starting, this.ctx.config.shutdownTimeout / 2)
      if (this.started) await this.stopWork()
    } finally {
      await closeBaseContext(this.ctx)
    }
  }
}

async function settlesWithin(promise: Promise<unknown> | undefined, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    promise?.catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms)
    }),
  ]).finally(() => clearTimeout(timer))
}
