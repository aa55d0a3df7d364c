import { BaseService } from '@atmos/runtime'
import type { LabelerConfig } from './config.ts'
import { type AppContext, createContext } from './context.ts'

/** Watches the network for email.atmos.attestation records, verifies them and serves signed labels. */
export class LabelerService extends BaseService<AppContext> {
  static async create(config: LabelerConfig): Promise<LabelerService> {
    return new LabelerService(createContext(config))
  }
}
