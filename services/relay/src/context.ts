import { type BaseContext, createBaseContext } from '@atmos/runtime'
import type { RelayConfig } from './config.ts'
import { Delivery } from './delivery/index.ts'
import { Submission } from './submission/index.ts'

/** Everything the relay needs, built once from its config; each role only when this process runs it. */
export type AppContext = BaseContext<RelayConfig> & {
  submission: Submission | undefined
  delivery: Delivery | undefined
}

export function createContext(config: RelayConfig): AppContext {
  const roles = new Set(config.relay.roles)
  // Readiness is "can accept mail" where the process accepts it: submission spools to
  // Postgres before its 250 and the reconciler enqueues later, so a process that takes
  // submissions needs Postgres alone (a Redis outage shows as degraded, and must not pull
  // every submission pod out of the Service). Delivery-only processes need Postgres and
  // Redis (their jobs and site limits live there); they take no traffic, so their
  // readiness only paces rollouts.
  const base = createBaseContext('relay', config, { redisRequired: !roles.has('submission') })
  return {
    ...base,
    submission: roles.has('submission') ? new Submission(base) : undefined,
    delivery: roles.has('delivery') ? new Delivery(base) : undefined,
  }
}
