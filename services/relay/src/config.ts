import { section, serviceConfigSchema } from '@atmos/config'
import type { z } from 'zod'

/** The relay's own settings, under `relay` in the config file and `ATMOS_RELAY_*` in the environment. */
export const relaySection = section({})

export const relayConfigSchema = serviceConfigSchema('relay', { httpPort: 8102, own: relaySection })

export type RelayConfig = z.output<typeof relayConfigSchema>
