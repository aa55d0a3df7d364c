import { BaseService } from '@atmos/runtime'
import type { FblIngestConfig } from './config.ts'
import { type AppContext, createContext } from './context.ts'

/** Inbound SMTP for feedback-loop reports and bounces; suppressions and member reputation. */
export class FblIngestService extends BaseService<AppContext> {
  static async create(config: FblIngestConfig): Promise<FblIngestService> {
    return new FblIngestService(createContext(config))
  }
}
