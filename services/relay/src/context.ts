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
  const base = createBaseContext('relay', config)
  const roles = new Set(config.relay.roles)
  return {
    ...base,
    submission: roles.has('submission') ? new Submission(base) : undefined,
    delivery: roles.has('delivery') ? new Delivery(base) : undefined,
  }
}
