import type { BaseContext } from '@atmos/runtime'
import type { RelayConfig } from '../config.ts'

/** Delivery workers: spooled messages to recipients' MX hosts, shaped per MX site, retried. */
export class Delivery {
  readonly ctx: BaseContext<RelayConfig>

  constructor(ctx: BaseContext<RelayConfig>) {
    this.ctx = ctx
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {}
}
