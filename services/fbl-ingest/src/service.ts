import { BaseService } from '@atmos/runtime'
import type { FblIngestConfig } from './config.ts'
import { type AppContext, createContext } from './context.ts'
import { poolIdentity } from './pool.ts'

/** Inbound SMTP for feedback-loop reports and bounces; suppressions and member reputation. */
export class FblIngestService extends BaseService<AppContext> {
  static async create(config: FblIngestConfig): Promise<FblIngestService> {
    return new FblIngestService(createContext(config))
  }

  protected override async startWork(): Promise<void> {
    // The secret first: without it no VERP address verifies, so nothing may be accepted.
    const pool = poolIdentity(this.ctx.config.fblIngest)
    // Workers first: the reconciler re-enqueues what a previous run stored but did not process.
    await this.ctx.workers?.start(pool)
    await this.ctx.listener?.start(pool)
  }

  protected override async stopWork(): Promise<void> {
    // Stop accepting first; whatever is stored waits in Postgres for the next start.
    await this.ctx.listener?.stop()
    await this.ctx.workers?.stop()
  }
}
