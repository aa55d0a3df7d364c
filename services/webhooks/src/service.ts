import { BaseService } from '@atmos/runtime'
import type { WebhooksConfig } from './config.ts'
import { type AppContext, type ContextOverrides, createContext } from './context.ts'

/** Sends members' webhook events from the Postgres outbox, with retries, to public HTTPS endpoints only. */
export class WebhooksService extends BaseService<AppContext> {
  static async create(config: WebhooksConfig, overrides: ContextOverrides = {}): Promise<WebhooksService> {
    return new WebhooksService(createContext(config, overrides))
  }

  protected override async startWork(): Promise<void> {
    this.ctx.dispatcher.start()
  }

  protected override async stopWork(): Promise<void> {
    await this.ctx.dispatcher.stop()
  }
}
