import type { BaseContext } from '@atmos/runtime'
import type { RelayConfig } from '../config.ts'

/** SMTP submission for members (587, and 465 when configured): accepts, signs and spools mail. */
export class Submission {
  readonly ctx: BaseContext<RelayConfig>

  constructor(ctx: BaseContext<RelayConfig>) {
    this.ctx = ctx
  }

  async start(): Promise<void> {}

  async stop(): Promise<void> {}
}
