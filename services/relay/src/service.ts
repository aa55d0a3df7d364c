import { BaseService } from '@atmos/runtime'
import type { RelayConfig } from './config.ts'
import { type AppContext, createContext } from './context.ts'

/** SMTP submission for members, dual DKIM signing, warming caps and durable delivery. */
export class RelayService extends BaseService<AppContext> {
  static async create(config: RelayConfig): Promise<RelayService> {
    return new RelayService(createContext(config))
  }
}
