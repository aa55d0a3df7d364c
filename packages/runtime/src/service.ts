import type { BaseConfig } from '@atmos/config'
import { type BaseContext, closeBaseContext } from './context.ts'
import type { Logger } from './logger.ts'
import type { Service } from './main.ts'

/**
 * The lifecycle every service shares: the ops endpoint comes up first (liveness answers
 * while the rest starts), and on destroy readiness turns 503 before the service's own
 * work is drained and the pools are closed. Services override startWork/stopWork.
 */
export abstract class BaseService<Ctx extends BaseContext<BaseConfig>> implements Service {
  readonly ctx: Ctx

  constructor(ctx: Ctx) {
    this.ctx = ctx
  }

  get logger(): Logger {
    return this.ctx.logger
  }

  /** Starts the service's own servers and workers. */
  protected async startWork(): Promise<void> {}

  /** Stops accepting new work and waits for in-flight work to finish. */
  protected async stopWork(): Promise<void> {}

  async start(): Promise<void> {
    await this.ctx.ops.start()
    await this.startWork()
    this.logger.info('started')
  }

  async destroy(): Promise<void> {
    this.ctx.ops.startDraining()
    try {
      await this.stopWork()
    } finally {
      await closeBaseContext(this.ctx)
    }
  }
}
