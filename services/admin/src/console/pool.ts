import type { Db } from '@atmos/db'
import {
  deliverMessage,
  memberStatusChanged,
  processInbound,
  reverifySweep,
  revokeLabels,
  TypedQueue,
  verifyAttestation,
} from '@atmos/queues'
import { type SQL, sql } from 'drizzle-orm'
import { FIGURE_WINDOWS, type FigureWindow, windowBounds } from '../account/figures.ts'

/**
 * The pool at a glance, for the operator console: what every attempt of the pool came to
 * over a window, deferral and bounce rates by recipient site, queue depths, and the head of
 * the label stream. Each query is one index range (delivery_attempts_started_idx,
 * feedback_events_type_at_idx, the labels primary key) over at most 30 days, so its cost is
 * the pool's volume in the window, never its history.
 */

export type PoolCounts = { delivered: number; deferred: number; bounced: number; complained: number }
export type PoolVolume = { window: FigureWindow; from: Date; buckets: Array<{ start: Date; counts: PoolCounts }> }

const HOUR_MS = 3_600_000
const DAY_MS = 86_400_000

/**
 * Delivery attempts by outcome (delivered, deferred, failed: refused or expired) and counted
 * complaints, bucketed by hour (24h) or UTC day (7d, 30d). "Sent" is the stack of the three
 * attempt outcomes. Complaints count as the reputation counts them (verified, counted).
 */
export async function poolVolume(db: Db, window: FigureWindow, now = new Date()): Promise<PoolVolume> {
  const { from, step } = windowBounds(window, now)
  const until = new Date(now.getTime() + 1).toISOString()
  const attempts = await db.execute<{ bucket: string; delivered: string; deferred: string; bounced: string }>(
    poolAttemptsSql(from, until, step),
  )
  const complaints = await db.execute<{ bucket: string; n: string }>(poolComplaintsSql(from, until, step))
  const unit = step === 'hour' ? HOUR_MS : DAY_MS
  const buckets = Array.from({ length: FIGURE_WINDOWS[window].buckets }, (_, i) => ({
    start: new Date(from.getTime() + i * unit),
    counts: { delivered: 0, deferred: 0, bounced: 0, complained: 0 },
  }))
  const at = new Map(buckets.map((b, i) => [b.start.getTime(), i]))
  for (const r of attempts) {
    const b = buckets[at.get(Number(r.bucket)) ?? -1]
    if (!b) continue
    b.counts.delivered += Number(r.delivered)
    b.counts.deferred += Number(r.deferred)
    b.counts.bounced += Number(r.bounced)
  }
  for (const r of complaints) {
    const b = buckets[at.get(Number(r.bucket)) ?? -1]
    if (b) b.counts.complained += Number(r.n)
  }
  return { window, from, buckets }
}

/** The pool's attempts by outcome and bucket (delivery_attempts_started_idx); exported so a test can EXPLAIN it. */
export function poolAttemptsSql(from: Date, until: string, step: 'hour' | 'day'): SQL {
  return sql`
    select (extract(epoch from date_bin(${`1 ${step}`}::interval, started_at, ${from.toISOString()}::timestamptz)) * 1000)::bigint::text as bucket,
      count(*) filter (where outcome = 'delivered') as delivered,
      count(*) filter (where outcome = 'deferred') as deferred,
      count(*) filter (where outcome = 'failed') as bounced
    from delivery_attempts
    where started_at >= ${from.toISOString()}::timestamptz and started_at < ${until}::timestamptz
    group by 1`
}

/** Counted complaints by bucket (feedback_events_type_at_idx); exported so a test can EXPLAIN it. */
export function poolComplaintsSql(from: Date, until: string, step: 'hour' | 'day'): SQL {
  return sql`
    select (extract(epoch from date_bin(${`1 ${step}`}::interval, occurred_at, ${from.toISOString()}::timestamptz)) * 1000)::bigint::text as bucket,
      count(*) as n
    from feedback_events
    where type = 'complaint' and occurred_at >= ${from.toISOString()}::timestamptz and occurred_at < ${until}::timestamptz
      and coalesce((details->>'verified')::boolean, true) and coalesce((details->>'counted')::boolean, true)
    group by 1`
}

/**
 * The recipient sites the console names, matched by the attempt's MX host suffix: the same
 * names and suffixes as the relay's default shaping rules (relay delivery/config.ts,
 * DEFAULT_SITE_RULES); everything else is "other".
 */
export const SITES: Array<{ name: string; suffixes: string[] }> = [
  { name: 'gmail', suffixes: ['google.com', 'googlemail.com'] },
  { name: 'outlook', suffixes: ['protection.outlook.com', 'outlook.com', 'hotmail.com'] },
  { name: 'yahoo', suffixes: ['yahoodns.net', 'yahoo.com', 'aol.com'] },
]

export type SiteRate = { site: string; attempts: number; deferred: number; bounced: number }

/** Attempts, deferrals and refusals per site over the last `hours`, sites in SITES order then other. */
export async function siteRates(db: Db, hours: number, now = new Date()): Promise<SiteRate[]> {
  const from = new Date(now.getTime() - hours * HOUR_MS).toISOString()
  const rows = await db.execute<{ site: string; attempts: string; deferred: string; bounced: string }>(
    siteRatesSql(from),
  )
  const by = new Map(rows.map((r) => [r.site, r]))
  return [...SITES.map((s) => s.name), 'other'].map((site) => {
    const r = by.get(site)
    return {
      site,
      attempts: Number(r?.attempts ?? 0),
      deferred: Number(r?.deferred ?? 0),
      bounced: Number(r?.bounced ?? 0),
    }
  })
}

/** Attempts per site since `from` (delivery_attempts_started_idx); exported so a test can EXPLAIN it. */
export function siteRatesSql(from: string): SQL {
  // lower(trailing-dot-free host) compared by equality or a fixed-suffix LIKE: no regex on MX names.
  const host = sql`lower(rtrim(coalesce(mx_host, ''), '.'))`
  const cases = SITES.map(
    (s) =>
      sql`when ${sql.join(
        s.suffixes.map((x) => sql`${host} = ${x} or ${host} like ${`%.${x}`}`),
        sql` or `,
      )} then ${s.name}`,
  )
  return sql`
    select case ${sql.join(cases, sql` `)} else 'other' end as site,
      count(*) as attempts,
      count(*) filter (where outcome = 'deferred') as deferred,
      count(*) filter (where outcome = 'failed') as bounced
    from delivery_attempts
    where started_at >= ${from}::timestamptz
    group by 1`
}

/** The newest label's sequence number and when it was written (the primary key's last entry). */
export async function labelHead(db: Db): Promise<{ seq: number; at: Date } | null> {
  const [r] = await db.execute<{ seq: string; at: Date }>(
    sql`select seq::text, created_at as at from labels order by seq desc limit 1`,
  )
  return r ? { seq: Number(r.seq), at: new Date(r.at) } : null
}

export type QueueDepth = {
  name: string
  waiting: number
  active: number
  delayed: number
  failed: number
  /** When the oldest job still waiting was added; null when none waits. */
  oldestWaiting: Date | null
}

const QUEUE_DEFS = [deliverMessage, processInbound, memberStatusChanged, verifyAttestation, revokeLabels, reverifySweep]

/** How long the console waits for Redis before it shows the queues as unavailable. */
const QUEUE_TIMEOUT_MS = 2000

/** The admin's Redis connection, as the queues take it. */
export type RedisConnection = ConstructorParameters<typeof TypedQueue>[1]

export type QueueReader = { read: () => Promise<QueueDepth[] | null>; close: () => Promise<void> }

/** Reads every queue's counts and oldest waiting job; null when Redis does not answer in time. */
export function queueReader(connection: RedisConnection, prefix: string): QueueReader {
  const typed = QUEUE_DEFS.map((def) => new TypedQueue(def as never, connection, prefix))
  const queues = typed.map((t) => t.queue)
  const read = async () => {
    let timer: NodeJS.Timeout | undefined
    const all = Promise.all(
      queues.map(async (q) => {
        const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed')
        // Oldest first: the job at the far end of the wait list.
        const [oldest] = await q.getJobs(['wait'], 0, 0, true)
        return {
          name: q.name,
          waiting: counts.waiting ?? 0,
          active: counts.active ?? 0,
          delayed: counts.delayed ?? 0,
          failed: counts.failed ?? 0,
          oldestWaiting: oldest ? new Date(oldest.timestamp) : null,
        }
      }),
    )
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), QUEUE_TIMEOUT_MS)
    })
    try {
      return await Promise.race([all.catch(() => null), timeout])
    } finally {
      clearTimeout(timer)
    }
  }
  return { read, close: async () => void (await Promise.all(typed.map((t) => t.close()))) }
}
