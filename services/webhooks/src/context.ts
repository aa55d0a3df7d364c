import { type BaseContext, createBaseContext } from '@atmos/runtime'
import { loadKeyring } from '@atmos/secrets'
import type { WebhooksConfig } from './config.ts'
import { Dispatcher } from './dispatch/dispatcher.ts'
import type { Resolve } from './dispatch/safe-post.ts'

/** Everything the webhooks service needs, built once from its config. */
export type AppContext = BaseContext<WebhooksConfig> & { dispatcher: Dispatcher }

export type ContextOverrides = {
  /** Name resolution of endpoint hosts (tests); the system's otherwise. */
  resolve?: Resolve | undefined
}

export function createContext(config: WebhooksConfig, overrides: ContextOverrides = {}): AppContext {
  // Readiness: the outbox is in Postgres and the dispatcher polls it; Redis is not used, so
  // only Postgres is required.
  const base = createBaseContext('webhooks', config, { redisRequired: false })
  const w = config.webhooks
  const dispatcher = new Dispatcher({
    sql: base.db.$client,
    logger: base.logger,
    registry: base.metrics,
    // Read at start: a missing or unreadable key file stops the service with its reason.
    keyring: loadKeyring(w.kekFile),
    retrySchedule: w.retrySchedule,
    timeoutMs: w.timeout,
    leaseMs: Math.max(w.lease, w.timeout + 5_000),
    pollIntervalMs: w.pollInterval,
    concurrency: w.concurrency,
    perEndpoint: Math.min(w.perEndpoint, w.concurrency),
    allowHttp: w.allowHttp,
    allowPrivate: w.allowPrivate,
    disableAfterFailures: w.disableAfterFailures,
    disableAfterMs: w.disableAfter,
    retentionMs: w.retention,
    resolve: overrides.resolve,
  })
  return { ...base, dispatcher }
}
