import { section, serviceConfigSchema } from '@atmos/config'
import type { z } from 'zod'

/** The labeler's own settings, under `labeler` in the config file and `ATMOS_LABELER_*` in the environment. */
export const labelerSection = section({})

export const labelerConfigSchema = serviceConfigSchema('labeler', { httpPort: 8101, own: labelerSection })

export type LabelerConfig = z.output<typeof labelerConfigSchema>
