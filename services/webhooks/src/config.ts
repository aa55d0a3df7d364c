import { field, parseDuration, section, serviceConfigSchema } from '@atmos/config'
import { z } from 'zod'

/** The webhooks service's own settings, under `webhooks` in the config file and `ATMOS_WEBHOOKS_*` in the environment. */
export const webhooksSection = section({
  /**
   * The key-encryption key file that seals endpoint secrets; the admin (`admin.webhooks.kekFile`)
   * seals with the same file, which holds nothing else.
   */
  kekFile: field.string('.state/webhooks/kek'),
  /**
   * Waits before each retry, after the first attempt fails: eight attempts over about 28 hours.
   * Each wait is varied by ±10 %.
   */
  retrySchedule: field.list(['5s', '5m', '30m', '2h', '5h', '10h', '10h']).pipe(
    z.array(z.string()).transform((xs, ctx) =>
      xs.map((x) => {
        const ms = parseDuration(x)
        if (!Number.isFinite(ms) || ms < 0) ctx.addIssue({ code: 'custom', message: `not a duration: ${x}` })
        return ms
      }),
    ),
  ),
  /** The whole of one POST: connection, TLS, request and answer. */
  timeout: field.duration('10s'),
  /** How long a claimed delivery is held before another dispatcher may take it (above `timeout`). */
  lease: field.duration('60s'),
  /** How often Postgres is asked for due deliveries when there was nothing to do. */
  pollInterval: field.duration('1s'),
  /** POSTs in flight at once, per process. */
  concurrency: field.int(16, { min: 1, max: 256 }),
  /** POSTs in flight to one endpoint at once, per process: a slow endpoint holds no more slots than this. */
  perEndpoint: field.int(4, { min: 1, max: 256 }),
  /** Events older than this, with no delivery still pending, are deleted with their deliveries. */
  retention: field.duration('30d'),
  /** An endpoint is disabled when this many events in a row failed every attempt… */
  disableAfterFailures: field.int(5, { min: 1, max: 10_000 }),
  /** …and its first failure of the run is at least this old. */
  disableAfter: field.duration('24h'),
  /**
   * Sends to private, loopback, link-local, CGNAT and other non-public addresses too. For tests
   * and the local network only: in production it lets members reach the pool's own network.
   */
  allowPrivate: field.bool(false),
  /** Sends to http:// URLs too. For tests and the local network only. */
  allowHttp: field.bool(false),
})

export const webhooksConfigSchema = serviceConfigSchema('webhooks', { httpPort: 8106, own: webhooksSection })

export type WebhooksConfig = z.output<typeof webhooksConfigSchema>
