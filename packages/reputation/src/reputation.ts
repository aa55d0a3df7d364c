import { sql } from 'drizzle-orm'
import { type Executor, num } from './executor.ts'
import { DEFAULT_THRESHOLDS, type Level, levelFor, percent, type Thresholds, worst } from './thresholds.ts'

export const WINDOWS = { '24h': 86_400_000, '7d': 7 * 86_400_000 } as const
export type WindowName = keyof typeof WINDOWS

export type WindowFigures<W extends string = WindowName> = {
  window: W
  /** Where the window starts: its length back from now, or the member's last reinstatement if later. */
  since: Date
  /** Recipients whose message was delivered in the window. */
  delivered: number
  /** Recipients the remote MX refused outright at delivery (never delivered). */
  refused: number
  complaints: number
  /** Complaints Gmail-style aggregate figures stand for (rate × volume, where the volume was given). */
  aggregateComplaints: number
  /** The highest aggregate rate recorded without a volume: it counts as a rate on its own. */
  aggregateRate: number
  hardBounces: number
  softBounces: number
  complaintRate: number
  bounceRate: number
  /** False while the window holds fewer than `minVolume` messages: its rates are shown but decide nothing. */
  counted: boolean
  level: Level
  reasons: string[]
}

export type Reputation = {
  memberId: number | null
  windows: Record<WindowName, WindowFigures>
  level: Level
  /** Why the level is what it is, in words an operator and the member can read. */
  reasons: string[]
}

export type ReputationOptions = {
  thresholds?: Partial<Thresholds>
  now?: Date
}

/**
 * A member's reputation (or the whole pool's, with `memberId` null) over the rolling
 * windows. Complaint rate is complaints per delivered message: a complaint needs a
 * delivery. Bounce rate is hard bounces per message that reached a final outcome
 * (delivered, or refused by the MX), since a list of dead addresses may never deliver
 * at all. For a member, the windows start no earlier than the last time it became active:
 * an operator's reinstatement is a fresh start, not an instant re-suspension on old figures.
 */
export async function computeReputation(
  db: Executor,
  memberId: number | null,
  opts: ReputationOptions = {},
): Promise<Reputation> {
  const t = { ...DEFAULT_THRESHOLDS, ...opts.thresholds }
  const now = opts.now ?? new Date()
  let activeSince: Date | null = null
  if (memberId !== null) {
    const rows = await db.execute<{ at: string | null }>(sql`
      select max(at) as at from member_status_changes where member_id = ${memberId} and to_status = 'active'`)
    activeSince = rows[0]?.at ? new Date(rows[0].at) : null
  }
  const windows = {} as Record<WindowName, WindowFigures>
  let level: Level = 'ok'
  const reasons: string[] = []
  for (const name of Object.keys(WINDOWS) as WindowName[]) {
    const start = new Date(now.getTime() - WINDOWS[name])
    const since = activeSince && activeSince > start ? activeSince : start
    const figures = await windowFigures(db, memberId, name, since, now, t)
    windows[name] = figures
    level = worst(level, figures.level)
    reasons.push(...figures.reasons)
  }
  return { memberId, windows, level, reasons }
}

/** The figures of one member (or the pool) between `since` and `now`, judged against `t`. */
export async function windowFigures<W extends string>(
  db: Executor,
  memberId: number | null,
  window: W,
  since: Date,
  now: Date,
  t: Thresholds,
): Promise<WindowFigures<W>> {
  const from = since.toISOString()
  // Up to the end of `now`'s millisecond: Postgres keeps microseconds, and an event
  // recorded in the same millisecond as the check (the complaint that triggered it) must count.
  const to = new Date(now.getTime() + 1).toISOString()
  const member = (column: string) => (memberId === null ? sql`true` : sql`${sql.raw(column)} = ${memberId}`)
  const [outcomes] = await db.execute<{ delivered: string; refused: string }>(sql`
    select count(*) filter (where r.state = 'delivered') as delivered,
           count(*) filter (where r.state = 'bounced') as refused
    from message_recipients r join messages m on m.id = r.message_id
    where ${member('m.member_id')} and r.state in ('delivered', 'bounced')
      and r.updated_at > ${from}::timestamptz and r.updated_at < ${to}::timestamptz`)
  const [events] = await db.execute<{ complaints: string; hard: string; soft: string }>(sql`
    select count(*) filter (where type = 'complaint') as complaints,
           count(*) filter (where type = 'hard_bounce') as hard,
           count(*) filter (where type = 'soft_bounce') as soft
    from feedback_events
    where ${member('member_id')} and member_id is not null
      and occurred_at > ${from}::timestamptz and occurred_at < ${to}::timestamptz
      -- Events attributed only by unsigned header claims are kept on record but never
      -- count: anyone can write X-Atmos-Member-Did into a forged report. Nor do complaints
      -- from a reporter that did not authenticate as a configured feedback-loop provider
      -- (details.counted false): anyone holding one message could send those.
      and coalesce((details->>'verified')::boolean, true)
      and coalesce((details->>'counted')::boolean, true)`)
  // An aggregate period counts in every window it overlaps: providers report by day.
  const [aggregate] = await db.execute<{ complaints: string | null; rate: string | null }>(sql`
    select sum(complaint_rate * volume) filter (where volume is not null) as complaints,
           max(complaint_rate) filter (where volume is null) as rate
    from aggregate_feedback
    where ${member('member_id')}
      and period_end > ${from}::timestamptz and period_start < ${to}::timestamptz`)
  const delivered = num(outcomes?.delivered)
  const refused = num(outcomes?.refused)
  const complaints = num(events?.complaints)
  const aggregateComplaints = num(aggregate?.complaints)
  const aggregateRate = num(aggregate?.rate)
  const hardBounces = num(events?.hard)
  const softBounces = num(events?.soft)
  const complaintRate = Math.max(delivered ? (complaints + aggregateComplaints) / delivered : 0, aggregateRate)
  const outcomesTotal = delivered + refused
  const bounceRate = outcomesTotal ? Math.min(1, hardBounces / outcomesTotal) : 0
  // Aggregate figures come with their own volume (the provider's): they count even when ours is small.
  const counted = outcomesTotal >= t.minVolume || aggregateRate > 0
  const reasons: string[] = []
  let level: Level = 'ok'
  if (counted) {
    const c = levelFor(complaintRate, t.complaintWarn, t.complaintSuspend)
    const b = outcomesTotal >= t.minVolume ? levelFor(bounceRate, t.bounceWarn, t.bounceSuspend) : 'ok'
    if (c !== 'ok') {
      const limit = c === 'suspend' ? t.complaintSuspend : t.complaintWarn
      reasons.push(
        `complaint rate ${percent(complaintRate)} over ${window} (${complaints + Math.round(aggregateComplaints)} complaints, ${delivered} delivered${aggregateRate ? `, aggregate ${percent(aggregateRate)}` : ''}) reached the ${c} threshold of ${percent(limit)}`,
      )
    }
    if (b !== 'ok') {
      const limit = b === 'suspend' ? t.bounceSuspend : t.bounceWarn
      reasons.push(
        `hard-bounce rate ${percent(bounceRate)} over ${window} (${hardBounces} of ${outcomesTotal}) reached the ${b} threshold of ${percent(limit)}`,
      )
    }
    level = worst(c, b)
  }
  return {
    window,
    since,
    delivered,
    refused,
    complaints,
    aggregateComplaints,
    aggregateRate,
    hardBounces,
    softBounces,
    complaintRate,
    bounceRate,
    counted,
    level,
    reasons,
  }
}
