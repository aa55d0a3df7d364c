// Entry point of the admin: config from the environment and $ATMOS_CONFIG, then run until SIGTERM.
import { runMain } from '@atmos/runtime'
import { adminConfigSchema } from './config.ts'
import { AdminService } from './service.ts'

await runMain({ name: 'admin', schema: adminConfigSchema, create: AdminService.create })
