// Entry point of the scheduler: config from the environment and $ATMOS_CONFIG, then run until SIGTERM.
import { runMain } from '@atmos/runtime'
import { schedulerConfigSchema } from './config.ts'
import { SchedulerService } from './service.ts'

await runMain({ name: 'scheduler', schema: schedulerConfigSchema, create: SchedulerService.create })
