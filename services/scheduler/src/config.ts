import { field, section, serviceConfigSchema } from '@atmos/config'
import type { z } from 'zod'

/** The scheduler's own settings, under `scheduler` in the config file and `ATMOS_SCHEDULER_*` in the environment. */
export const schedulerSection = section({
  /** How often every live attestation is verified again. */
  reverifyInterval: field.duration('24h'),
  /**
   * Verifications started per second at most: the work is spread over the interval instead
   * of a burst at the tick. Each costs about ten DNS queries.
   */
  verifyRate: field.int(5, { min: 1, max: 10_000 }),
})

export const schedulerConfigSchema = serviceConfigSchema('scheduler', { httpPort: 8103, own: schedulerSection })

export type SchedulerConfig = z.output<typeof schedulerConfigSchema>
