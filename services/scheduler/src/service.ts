import { BaseService } from '@atmos/runtime'
import type { SchedulerConfig } from './config.ts'
import { type AppContext, createContext } from './context.ts'

/** Re-verifies every attestation on an interval and negates labels when DNS degrades. */
export class SchedulerService extends BaseService<AppContext> {
  static async create(config: SchedulerConfig): Promise<SchedulerService> {
    return new SchedulerService(createContext(config))
  }

  protected override async startWork(): Promise<void> {
    await this.ctx.sweeper.start()
  }

  protected override async stopWork(): Promise<void> {
    await this.ctx.sweeper.stop()
  }
}
