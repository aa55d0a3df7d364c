import type { Pool } from '@atmos/db'
import type { Logger } from '@atmos/runtime'
import type { Keyring } from '@atmos/secrets'
import { signatureHeader, unsealSecret } from '@atmos/webhook-events'
import { Counter, Histogram, type Registry } from 'prom-client'
import { nextDelayMs } from './backoff.ts'
import { type ClaimedDelivery, claimDue, purgeOld, recordFailure, recordSuccess, recordUnsendable } from './outbox.ts'
import { type Resolve, safePost } from './safe-post.ts'

export type DispatcherOptions = {
  sql: Pool
  logger: Logger
  registry: Registry
  keyring: Keyring
  /** Waits between attempts (the first after the first failure); its length is the number of retries. */
  retrySchedule: number[]
  timeoutMs: number
  leaseMs: number
  pollIntervalMs: number
  concurrency: number
  /** POSTs in flight to one endpoint at once, per process. */
  perEndpoint: number
  allowHttp: boolean
  allowPrivate: boolean
  disableAfterFailures: number
  disableAfterMs: number
  retentionMs: number
  resolve?: Resolve | undefined
}

/** How often old events are purged, at most. */
const PURGE_EVERY_MS = 10 * 60_000

/**
 * Sends the outbox: claims due deliveries from Postgres, POSTs each (Standard Webhooks
 * headers, signed with the endpoint's secret and, during a rotation, its previous one too),
 * and records the outcome. Postgres is the queue: nothing lives in Redis, so a restart (or a
 * second replica) simply picks up what is due.
 */
export class Dispatcher {
  private readonly o: DispatcherOptions
  private running = false
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  private readonly inFlight = new Set<Promise<void>>()
  private readonly perEndpoint = new Map<number, number>()
  private readonly sent: Counter<'outcome'>
  private readonly duration: Histogram
  private lastPurge = 0

  constructor(o: DispatcherOptions) {
    this.o = o
    this.sent = new Counter({
      name: 'atmos_webhooks_attempts_total',
      help: 'Webhook delivery attempts by outcome (delivered, retry, failed, refused)',
      labelNames: ['outcome'],
      registers: [o.registry],
    })
    this.duration = new Histogram({
      name: 'atmos_webhooks_attempt_seconds',
      help: 'Duration of one webhook POST',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [o.registry],
    })
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.loop = this.run()
  }

  /** Stops claiming and waits for the POSTs in flight (each bounded by the timeout). */
  async stop(): Promise<void> {
    this.running = false
    this.wake?.()
    await this.loop
    await Promise.allSettled([...this.inFlight])
  }

  private async run(): Promise<void> {
    while (this.running) {
      await this.purgeDue()
      let claimed = 0
      try {
        const room = this.o.concurrency - this.inFlight.size
        if (room > 0) {
          const skip = [...this.perEndpoint].filter(([, n]) => n >= this.o.perEndpoint).map(([id]) => id)
          const due = await claimDue(this.o.sql, room, this.o.leaseMs, { perEndpoint: this.o.perEndpoint, skip })
          claimed = due.length
          for (const d of due) this.track(d.endpointId, this.deliver(d))
        }
      } catch (err) {
        this.o.logger.warn({ err: (err as Error).message }, 'webhook claim failed; retrying')
      }
      // A full batch may mean more is due: go again at once; otherwise wait for the next poll
      // (or for a slot to free up).
      if (claimed > 0 && this.inFlight.size < this.o.concurrency) continue
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.o.pollIntervalMs)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = undefined
    }
  }

  /** Keeps the outbox to its retention; a failure is retried at the next interval. */
  private async purgeDue(): Promise<void> {
    if (Date.now() - this.lastPurge < PURGE_EVERY_MS) return
    this.lastPurge = Date.now()
    try {
      let n = 0
      for (let batch = 1000; batch === 1000 && this.running; ) {
        batch = await purgeOld(this.o.sql, this.o.retentionMs, 1000)
        n += batch
      }
      if (n) this.o.logger.info({ events: n }, 'old webhook events purged')
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, 'webhook event purge failed')
    }
  }

  private track(endpointId: number, p: Promise<void>): void {
    this.inFlight.add(p)
    this.perEndpoint.set(endpointId, (this.perEndpoint.get(endpointId) ?? 0) + 1)
    void p.finally(() => {
      this.inFlight.delete(p)
      const n = (this.perEndpoint.get(endpointId) ?? 1) - 1
      if (n > 0) this.perEndpoint.set(endpointId, n)
      else this.perEndpoint.delete(endpointId)
      // A slot is free: claim again now rather than at the next poll.
      this.wake?.()
    })
  }

  /** One attempt of one delivery; never throws (a failure to record is retried when the lease lapses). */
  async deliver(d: ClaimedDelivery): Promise<void> {
    const log = { eventId: d.eventId, endpointId: d.endpointId, attempt: d.attempt, type: d.type }
    try {
      let secrets: Buffer[]
      try {
        secrets = this.secretsOf(d)
      } catch (err) {
        this.o.logger.error({ ...log, err: (err as Error).message }, 'webhook secret does not open')
        await recordUnsendable(this.o.sql, d, 'the endpoint secret cannot be opened by the webhooks service')
        return
      }
      const timestamp = Math.floor(Date.now() / 1000)
      const body = JSON.stringify({ type: d.type, timestamp: d.createdAt.toISOString(), data: d.payload })
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'AtmosphereMail-Webhooks/1',
        'webhook-id': d.eventId,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signatureHeader(secrets, d.eventId, timestamp, body),
      }
      const result = await safePost(d.url, headers, body, {
        timeoutMs: this.o.timeoutMs,
        allowHttp: this.o.allowHttp,
        allowPrivate: this.o.allowPrivate,
        resolve: this.o.resolve,
      })
      this.duration.observe(result.ms / 1000)
      if (result.ok) {
        await recordSuccess(this.o.sql, d, result.status)
        this.sent.inc({ outcome: 'delivered' })
        this.o.logger.debug({ ...log, status: result.status }, 'webhook delivered')
        return
      }
      const retryInMs = nextDelayMs(this.o.retrySchedule, d.attempt)
      const outcome = await recordFailure(this.o.sql, d, result, retryInMs, {
        disableAfterFailures: this.o.disableAfterFailures,
        disableAfterMs: this.o.disableAfterMs,
      })
      this.sent.inc({
        outcome: result.error.startsWith('refused') ? 'refused' : retryInMs === null ? 'failed' : 'retry',
      })
      this.o.logger.info({ ...log, status: result.status, error: result.error, retryInMs }, 'webhook attempt failed')
      if (outcome.disabled) {
        this.o.logger.warn({ endpointId: d.endpointId, memberId: d.memberId }, 'webhook endpoint disabled')
      }
    } catch (err) {
      this.o.logger.warn(
        { ...log, err: (err as Error).message },
        'webhook outcome not recorded; retried after the lease',
      )
    }
  }

  /** The current secret, then the previous one while its rotation grace lasts. */
  private secretsOf(d: ClaimedDelivery): Buffer[] {
    const out = [unsealSecret(this.o.keyring, d.memberId, d.kekId, d.secretSealed)]
    if (d.previousSecretSealed && d.previousKekId) {
      out.push(unsealSecret(this.o.keyring, d.memberId, d.previousKekId, d.previousSecretSealed))
    }
    return out
  }
}
