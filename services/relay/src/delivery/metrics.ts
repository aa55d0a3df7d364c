import type { BaseContext } from '@atmos/runtime'
import * as prom from 'prom-client'

type Registry = BaseContext['metrics']

export type DeliveryMetrics = ReturnType<typeof createDeliveryMetrics>

export function createDeliveryMetrics(registry: Registry) {
  const registers = [registry]
  return {
    delivered: new prom.Counter({
      name: 'atmos_relay_delivered_total',
      help: 'Recipients delivered (2xx after DATA)',
      registers,
    }),
    deferred: new prom.Counter({
      name: 'atmos_relay_deferred_total',
      help: 'Attempts that ended in a retry, by cause (reply: a 4xx; unreachable: no MX answered; dns: a temporary DNS failure)',
      labelNames: ['cause'],
      registers,
    }),
    bounced: new prom.Counter({
      name: 'atmos_relay_bounced_total',
      help: 'Recipients that failed for good, by type (hard_bounce, soft_bounce, expired)',
      labelNames: ['type'],
      registers,
    }),
    bounceNotices: new prom.Counter({
      name: 'atmos_relay_bounce_notices_total',
      help: 'Bounce notices to members, by result (spooled; failed: could not be built or signed, e.g. no pool key)',
      labelNames: ['result'],
      registers,
    }),
    stopped: new prom.Counter({
      name: 'atmos_relay_delivery_stopped_total',
      help: 'Queued recipients ended as failed without an attempt: the member was suspended or the address suppressed meanwhile',
      registers,
    }),
    queueDepth: new prom.Gauge({
      name: 'atmos_relay_queue_depth',
      help: 'Spooled recipients not yet final, by state (queued: never tried; deferred: waiting to retry)',
      labelNames: ['state'],
      registers,
    }),
    latency: new prom.Histogram({
      name: 'atmos_relay_delivery_latency_seconds',
      help: 'From acceptance to a 2xx from the recipient MX',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400],
      registers,
    }),
    attemptSeconds: new prom.Histogram({
      name: 'atmos_relay_delivery_attempt_seconds',
      help: 'Duration of one delivery attempt (DNS, connection wait, SMTP transaction)',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    lapsedClaims: new prom.Counter({
      name: 'atmos_relay_delivery_lapsed_claims_total',
      help: 'Recipients taken over from a worker that died mid-attempt: each may have been delivered twice',
      registers,
    }),
    connectionsOpened: new prom.Counter({
      name: 'atmos_relay_delivery_connections_opened_total',
      help: 'SMTP sessions opened to recipient MX hosts',
      registers,
    }),
    slotWaits: new prom.Counter({
      name: 'atmos_relay_delivery_slot_waits_total',
      help: 'Deliveries put back because their MX site had no free connection (not counted as attempts)',
      registers,
    }),
    reenqueued: new prom.Counter({
      name: 'atmos_relay_delivery_reenqueued_total',
      help: 'Jobs the reconciler enqueued for due recipients that had none',
      registers,
    }),
  }
}
