import { field, section, serviceConfigSchema } from '@atmos/config'
import { z } from 'zod'

/** The admin's own settings, under `admin` in the config file and `ATMOS_ADMIN_*` in the environment. */
export const adminSection = section({
  /** The web endpoint (the operator API; the members' dashboard and wizard join it). */
  web: section({
    host: field.string('127.0.0.1'),
    port: field.port(3000),
  }),
  /**
   * A secret file holding the operators' bearer token (`openssl rand -hex 32`); empty turns
   * the operator API off. Same permission rule as every secret file (0600, or 0640 root-owned).
   */
  operatorTokenFile: z.string().default(''),
})

export const adminConfigSchema = serviceConfigSchema('admin', { httpPort: 8105, own: adminSection })

export type AdminConfig = z.output<typeof adminConfigSchema>
