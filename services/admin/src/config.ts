import { section, serviceConfigSchema } from '@atmos/config'
import type { z } from 'zod'

/** The admin's own settings, under `admin` in the config file and `ATMOS_ADMIN_*` in the environment. */
export const adminSection = section({})

export const adminConfigSchema = serviceConfigSchema('admin', { httpPort: 8105, own: adminSection })

export type AdminConfig = z.output<typeof adminConfigSchema>
