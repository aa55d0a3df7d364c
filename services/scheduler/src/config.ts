import { section, serviceConfigSchema } from '@atmos/config'
import type { z } from 'zod'

/** The scheduler's own settings, under `scheduler` in the config file and `ATMOS_SCHEDULER_*` in the environment. */
export const schedulerSection = section({})

export const schedulerConfigSchema = serviceConfigSchema('scheduler', { httpPort: 8103, own: schedulerSection })

export type SchedulerConfig = z.output<typeof schedulerConfigSchema>
