import { section, serviceConfigSchema } from '@atmos/config'
import type { z } from 'zod'

/** The fbl-ingest's own settings, under `fblIngest` in the config file and `ATMOS_FBL_INGEST_*` in the environment. */
export const fblIngestSection = section({})

export const fblIngestConfigSchema = serviceConfigSchema('fblIngest', { httpPort: 8104, own: fblIngestSection })

export type FblIngestConfig = z.output<typeof fblIngestConfigSchema>
