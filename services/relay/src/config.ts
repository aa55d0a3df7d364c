import { field, poolSection, section, serviceConfigSchema } from '@atmos/config'
import { z } from 'zod'
import { apiSection } from './api/config.ts'
import { deliverySection } from './delivery/config.ts'
import { submissionSection } from './submission/config.ts'
import { throttleSection } from './submission/throttle-config.ts'

/** The relay's own settings, under `relay` in the config file and `ATMOS_RELAY_*` in the environment. */
export const relaySection = section({
  /**
   * What this process runs. Delivery workers scale out as separate processes
   * (`roles=delivery`); submission replicas share the warming counters through Postgres.
   */
  roles: z
    .preprocess(
      (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v),
      z.array(z.enum(['submission', 'delivery'])).min(1),
    )
    .default(['submission', 'delivery']),
  pool: poolSection,
  /** Key-encryption keys that seal DKIM private keys at rest (file: `<kekId> <base64 32 bytes>` per line). */
  kekFile: field.string('.state/relay/kek'),
  submission: submissionSection,
  /** Spike and spray rules that defer a domain's recipients before anything suspends (README: Throttle rules). */
  throttle: throttleSection,
  /** The HTTP send API, run by processes with the submission role. */
  api: apiSection,
  delivery: deliverySection,
})

export const relayConfigSchema = serviceConfigSchema('relay', { httpPort: 8102, own: relaySection })

export type RelayConfig = z.output<typeof relayConfigSchema>
