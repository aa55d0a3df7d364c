// Entry point of the fbl-ingest: config from the environment and $ATMOS_CONFIG, then run until SIGTERM.
import { runMain } from '@atmos/runtime'
import { fblIngestConfigSchema } from './config.ts'
import { FblIngestService } from './service.ts'

await runMain({ name: 'fbl-ingest', schema: fblIngestConfigSchema, create: FblIngestService.create })
