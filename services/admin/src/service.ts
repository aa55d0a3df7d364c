import { BaseService } from '@atmos/runtime'
import type { AdminConfig } from './config.ts'
import { type AppContext, createContext } from './context.ts'

/** Dashboard and enrollment wizard for members and operators. */
export class AdminService extends BaseService<AppContext> {
  static async create(config: AdminConfig): Promise<AdminService> {
    return new AdminService(createContext(config))
  }
}
