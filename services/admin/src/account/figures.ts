import type { Db } from '@atmos/db'
import { type SQL, sql } from 'drizzle-orm'
import { memberDomainIds } from './owner.ts'

/**
 * A member's mail over a window, for the account's charts. Each bucket counts the recipients
 * accepted in it (by the message's received_at) by what has become of them since, so that the
 * parts of a bar add up to what was sent:
 *
 * - delivered: the MX took it, and no bounce report came back for it later;
 * - deferred: waiting for a retry now (`deferralAttempts` counts every deferred attempt
 *   of the bucket's recipients, also of those delivered since);
 * - bounced: refused by the MX, expired, or delivered and then reported back as a hard
 *   bounce (a DSN fbl-ingest attributed to the message);
 * - queued: not tried yet; failed: the relay stopped trying (suspension, suppression);
 * - complained: a complaint attributed to the message (it overlaps delivered).
 *
 * Feedback counts as the reputation figures count it: events only attributed by unsigned
 * header claims, or from reporters that are not configured feedback loops, do not.
 * Complaints with no message (a provider's report we could not tie to one) have no bucket
 * and no domain; they come as `unattributedComplaints` over the window.
 *
 * The queries walk the member's messages through messages_member_idx (member_id,
 * received_at), and reach recipients, attempts and events through their message and
 * recipient indexes: the cost is the member's own volume in the window, never the pool's.
 */

export type FigureWindow = '24h' | '7d' | '30d'

export const FIGURE_WINDOWS: Record<FigureWindow, { step: 'hour' | 'day'; buckets: number }> = {
  '24h': { step: 'hour', buckets: 24 },
  '7d': { step: 'day', buckets: 7 },
  '30d': { step: 'day', buckets: 30 },
}

export const COUNT_KEYS = [
  'sent',
  'delivered',
  'deferred',
  'deferralAttempts',
  'bounced',
  'queued',
  'failed',
  'complained',
] as const
export type CountKey = (typeof COUNT_KEYS)[number]
export type Counts = Record<CountKey, number>

export type Bucket = { start: Date; counts: Counts }
export type Series = { buckets: Bucket[]; total: Counts }

export type Figures = {
  window: FigureWindow
  step: 'hour' | 'day'
  /** The first bucket's start (a whole UTC hour or day); the last bucket is the current one, so far. */
  from: Date
  to: Date
  member: Series
  /**
   * One entry a domain: each live domain (also with nothing sent), then any domain given up
   * or moved away that sent in the window. Only the member's own domains ever appear.
   */
  domains: Array<{ domain: string; live: boolean; series: Series }>
  /**
   * Totals per X-Atmos-Category over the window (null: mail sent without one), most sent
   * first; empty when nothing was sent. Over the same messages as `member`.
   */
  categories: Array<{ category: string | null; total: Counts }>
  unattributedComplaints: number
}

export class NotMemberDomainError extends Error {
  override name = 'NotMemberDomainError'
}

const HOUR_MS = 3_600_000
const DAY_MS = 86_400_000

export function windowBounds(window: FigureWindow, now: Date): { from: Date; to: Date; step: 'hour' | 'day' } {
  const { step, buckets } = FIGURE_WINDOWS[window]
  const unit = step === 'hour' ? HOUR_MS : DAY_MS
  const current = Math.floor(now.getTime() / unit) * unit
  return { from: new Date(current - (buckets - 1) * unit), to: now, step }
}

/**
 * The member's figures over `window`, in total and per domain; with `domain`, only that
 * domain (one of the member's, live or not: else NotMemberDomainError).
 */
export async function memberFigures(
  db: Db,
  memberId: number,
  window: FigureWindow,
  opts: { domain?: string; now?: Date } = {},
): Promise<Figures> {
  const now = opts.now ?? new Date()
  const { from, to, step } = windowBounds(window, now)
  const owned = await memberDomainIds(db, memberId)
  let only: number[] | undefined
  if (opts.domain !== undefined) {
    const name = opts.domain.trim().toLowerCase()
    only = owned.filter((d) => d.domain === name).map((d) => d.id)
    if (!only.length) throw new NotMemberDomainError(`${name} is not a domain of this account`)
  }
  const rows = await db.execute<
    Record<string, string | null> & { domain_id: string | null; bucket: string; category: string | null }
  >(figuresSql({ memberId, from, to, step, domainIds: only }))
  // Complaints tied to no message are tied to no domain either: none when one domain is asked for.
  const [unattributed] = only
    ? [{ n: '0' }]
    : await db.execute<{ n: string }>(sql`
    select count(*) as n from feedback_events
    where member_id = ${memberId} and type = 'complaint' and message_id is null
      and occurred_at >= ${from.toISOString()}::timestamptz and occurred_at < ${end(to)}::timestamptz
      and coalesce((details->>'verified')::boolean, true) and coalesce((details->>'counted')::boolean, true)`)

  const starts = bucketStarts(window, from)
  const member = emptySeries(starts)
  const byName = new Map<string, { live: boolean; series: Series }>()
  const nameOf = new Map(owned.map((d) => [d.id, d]))
  for (const d of owned) {
    if (only && !only.includes(d.id)) continue
    const entry = byName.get(d.domain)
    if (entry) entry.live ||= d.live
    else if (d.live) byName.set(d.domain, { live: true, series: emptySeries(starts) })
  }
  const index = new Map(starts.map((s, i) => [s.getTime(), i]))
  const byCategory = new Map<string | null, Counts>()
  for (const row of rows) {
    const i = index.get(Number(row.bucket))
    if (i === undefined) continue
    let categoryTotal = byCategory.get(row.category)
    if (!categoryTotal) {
      categoryTotal = zero()
      byCategory.set(row.category, categoryTotal)
    }
    for (const key of COUNT_KEYS) categoryTotal[key] += Number(row[key] ?? 0)
    const owner = row.domain_id === null ? undefined : nameOf.get(Number(row.domain_id))
    // Messages from before domains existed may carry no domain: they count for the member only.
    let domainSeries: Series | undefined
    if (owner) {
      let entry = byName.get(owner.domain)
      if (!entry) {
        entry = { live: false, series: emptySeries(starts) }
        byName.set(owner.domain, entry)
      }
      domainSeries = entry.series
    }
    for (const key of COUNT_KEYS) {
      const n = Number(row[key] ?? 0)
      member.buckets[i]!.counts[key] += n
      member.total[key] += n
      if (domainSeries) {
        domainSeries.buckets[i]!.counts[key] += n
        domainSeries.total[key] += n
      }
    }
  }
  const domains = [...byName.entries()]
    .map(([domain, e]) => ({ domain, live: e.live, series: e.series }))
    .sort((a, b) => Number(b.live) - Number(a.live))
  const categories = [...byCategory.entries()]
    .map(([category, total]) => ({ category, total }))
    .sort((a, b) => b.total.sent - a.total.sent || String(a.category).localeCompare(String(b.category)))
  return {
    window,
    step,
    from,
    to,
    member,
    domains,
    categories,
    unattributedComplaints: Number(unattributed?.n ?? 0),
  }
}

/**
 * The figures statement, exported so a test can EXPLAIN it. Buckets are `date_bin` from the
 * window's start, a whole UTC hour or day, so the result does not depend on the session's
 * time zone. Keys are the COUNT_KEYS, spelled as columns.
 */
export function figuresSql(q: {
  memberId: number
  from: Date
  to: Date
  step: 'hour' | 'day'
  domainIds?: number[] | undefined
}): SQL {
  const domainFilter = q.domainIds
    ? sql`and domain_id in (${sql.join(
        q.domainIds.map((id) => sql`${id}`),
        sql`, `,
      )})`
    : sql``
  // The shape is forced, not left to the planner: on a busy pool it prefers hashing every
  // recipient of the pool against the member's messages (measured: a sequential scan of
  // message_recipients for a 7-day window). The member's messages come first (materialized,
  // through messages_member_idx), and each one's recipients through a lateral subquery that
  // `offset 0` keeps from being flattened into a join: an index probe a message.
  return sql`
    with m as materialized (
      select id, domain_id, received_at, category from messages
      where member_id = ${q.memberId}
        and received_at >= ${q.from.toISOString()}::timestamptz and received_at < ${end(q.to)}::timestamptz
        ${domainFilter}
    )
    select m.domain_id::text as domain_id,
      (extract(epoch from date_bin(${`1 ${q.step}`}::interval, m.received_at, ${q.from.toISOString()}::timestamptz))
        * 1000)::bigint::text as bucket,
      m.category,
      count(*) as "sent",
      count(*) filter (where r.state = 'delivered' and not coalesce(f.bounced, false)) as "delivered",
      count(*) filter (where r.state = 'deferred') as "deferred",
      coalesce(sum(a.deferrals), 0) as "deferralAttempts",
      count(*) filter (where r.state in ('bounced', 'expired') or coalesce(f.bounced, false)) as "bounced",
      count(*) filter (where r.state = 'queued') as "queued",
      count(*) filter (where r.state = 'failed') as "failed",
      count(*) filter (where coalesce(f.complained, false)) as "complained"
    from m
    cross join lateral (
      select r.id, r.state, r.address, r.attempts from message_recipients r where r.message_id = m.id offset 0) r
    left join lateral (
      -- Most recipients took one attempt that ended them, which was no deferral: only the
      -- others are looked up (a one-time filter before the probe).
      select count(*) as deferrals from delivery_attempts da
      where (r.attempts > 1 or r.state not in ('delivered', 'bounced'))
        and da.recipient_id = r.id and da.outcome = 'deferred') a on true
    left join lateral (
      -- A report without the recipient (redacted ARF) is about the message's only recipient:
      -- submission spools one copy a recipient.
      select bool_or(e.type = 'hard_bounce') as bounced, bool_or(e.type = 'complaint') as complained
      from feedback_events e
      where e.message_id = m.id and (e.recipient is null or e.recipient = lower(r.address))
        and coalesce((e.details->>'verified')::boolean, true) and coalesce((e.details->>'counted')::boolean, true)
    ) f on true
    group by 1, 2, 3`
}

/** Up to the end of `to`'s millisecond: Postgres keeps microseconds, and what came in at `now` counts. */
function end(to: Date): string {
  return new Date(to.getTime() + 1).toISOString()
}

function bucketStarts(window: FigureWindow, from: Date): Date[] {
  const { step, buckets } = FIGURE_WINDOWS[window]
  const unit = step === 'hour' ? HOUR_MS : DAY_MS
  return Array.from({ length: buckets }, (_, i) => new Date(from.getTime() + i * unit))
}

function zero(): Counts {
  return Object.fromEntries(COUNT_KEYS.map((k) => [k, 0])) as Counts
}

function emptySeries(starts: Date[]): Series {
  return { buckets: starts.map((start) => ({ start, counts: zero() })), total: zero() }
}
