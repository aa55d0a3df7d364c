// Entry point of the labeler: config from the environment and $ATMOS_CONFIG, then run until SIGTERM.
import { runMain } from '@atmos/runtime'
import { labelerConfigSchema } from './config.ts'
import { LabelerService } from './service.ts'

await runMain({ name: 'labeler', schema: labelerConfigSchema, create: LabelerService.create })
