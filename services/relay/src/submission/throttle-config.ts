import { field, section } from '@atmos/config'
import { THROTTLE_MODES } from '@atmos/reputation'
import { z } from 'zod'

const mode = (fallback: (typeof THROTTLE_MODES)[number]) => z.enum(THROTTLE_MODES).default(fallback)

/**
 * Throttle rules (`relay.throttle`, `ATMOS_RELAY_THROTTLE_*`): per sending domain, a deferral
 * (451 4.7.1 naming the rule) before anything suspends. Both start in `shadow`: they record
 * what they would have done, so that an operator sees their effect on real traffic before
 * turning them to `enforce`.
 */
export const throttleSection = section({
  spike: section({
    mode: mode('shadow'),
    /** The hour's recipients may reach this many times the domain's busiest hour in the 14 days before yesterday. */
    factor: z.coerce.number().min(1).max(1000).default(4),
    /** Recipients an hour any domain may send whatever its history (new and quiet domains). */
    floor: field.int(500, { min: 1 }),
  }),
  spray: section({
    mode: mode('shadow'),
    /** Recipients in the hour before the rule looks at their domains at all. */
    floor: field.int(100, { min: 1 }),
    /** Distinct recipient domains in the hour beyond which it fires. */
    maxDomains: field.int(400, { min: 1 }),
    /** Distinct recipient domains per recipient in the hour beyond which it fires (0–1). */
    maxRatio: z.coerce.number().min(0).max(1).default(0.9),
  }),
  /** How long a domain's counts are reused before Postgres is asked again (across replicas, a burst may pass by this much). */
  cacheTtl: field.duration('5s'),
  /** A decision is recorded at most once per domain, rule and mode in each such interval. */
  recordInterval: field.duration('10m'),
})

export type ThrottleConfig = z.output<typeof throttleSection>
