import { BaseService } from '@atmos/runtime'
import type { RelayConfig } from './config.ts'
import { type AppContext, createContext } from './context.ts'

/** SMTP submission for members, dual DKIM signing, warming caps and durable delivery. */
export class RelayService extends BaseService<AppContext> {
  static async create(config: RelayConfig): Promise<RelayService> {
    return new RelayService(createContext(config))
  }

  protected override async startWork(): Promise<void> {
    // Delivery first: a message accepted the moment submission opens finds a worker waiting.
    await this.ctx.delivery?.start()
    await this.ctx.submission?.start()
  }

  protected override async stopWork(): Promise<void> {
    // Stop accepting before stopping delivery; whatever is spooled waits in Postgres.
    await this.ctx.submission?.stop()
    await this.ctx.delivery?.stop()
  }
}
