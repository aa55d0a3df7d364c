import { domains, suppressions } from '@atmos/db'
import { and, asc, eq, isNull, sql } from 'drizzle-orm'
import type { Executor } from './executor.ts'
import { emitUnsubscribeWebhook } from './webhook-events.ts'

export const DAY_MS = 86_400_000
/** How long a hard bounce keeps an address suppressed unless configured otherwise. */
export const DEFAULT_BOUNCE_SUPPRESSION_MS = 30 * DAY_MS

/** `unsubscribe`: the recipient opted out of this member's mail (ARF opt-out, Apple's one-click unsubscribe). */
export type SuppressionReason = 'hard_bounce' | 'complaint' | 'unsubscribe' | 'manual'

export type SuppressInput = {
  memberId: number
  address: string
  reason: SuppressionReason
  detail?: string | null | undefined
  eventId?: number | null | undefined
  /**
   * The member's domain whose mail led to the entry. When not given, the domain of the
   * message the event (eventId) is about; either way only a domain of this member is kept.
   */
  domainId?: number | null | undefined
  /** Hard bounces only: how long the entry stands (default 30 days). Other entries never expire. */
  bounceForMs?: number | undefined
}

export type Suppression = {
  id: number
  memberId: number
  address: string
  reason: SuppressionReason
  detail: string | null
  /** The domain whose mail led to the entry, when known (the list is the member's, over all its domains). */
  domainId: number | null
  domain: string | null
  createdAt: Date
  expiresAt: Date | null
}

/**
 * Puts an address on the member's suppression list, or strengthens the standing entry.
 * There is at most one standing entry per member and address (a partial unique index): a
 * complaint, unsubscribe or manual entry turns a bounce entry into one that never expires, a new bounce
 * extends a bounce entry's term, and nothing shortens a term that is already longer.
 */
export async function suppress(db: Executor, input: SuppressInput): Promise<Suppression> {
  const address = input.address.trim().toLowerCase()
  const expires =
    input.reason === 'hard_bounce' ? new Date(Date.now() + (input.bounceForMs ?? DEFAULT_BOUNCE_SUPPRESSION_MS)) : null
  // The standing reason stays when the new one is weaker: a bounce under anything else, an
  // unsubscribe (which the member may lift) under a complaint or an operator's entry.
  const weaker = sql`((excluded.reason = 'hard_bounce' and suppressions.reason <> 'hard_bounce')
    or (excluded.reason = 'unsubscribe' and suppressions.reason in ('complaint', 'manual')))`
  // Which of the member's domains sent the mail: as given, else the event's message's.
  const fromEvent = sql`(select m.domain_id from feedback_events e join messages m on m.id = e.message_id
                         where e.id = ${input.eventId ?? null}::bigint)`
  const domainId = sql`(select d.id from domains d where d.member_id = ${input.memberId}
                        and d.id = coalesce(${input.domainId ?? null}::bigint, ${fromEvent}))`
  const rows = await db.execute<Record<string, unknown>>(sql`
    with s as (
      insert into suppressions (member_id, address, reason, detail, event_id, expires_at, domain_id)
      values (${input.memberId}, ${address}, ${input.reason}, ${input.detail ?? null}, ${input.eventId ?? null},
              ${expires ? expires.toISOString() : null}::timestamptz, ${domainId})
      on conflict (member_id, address) where removed_at is null do update set
        reason = case when ${weaker} then suppressions.reason else excluded.reason end,
        detail = case when ${weaker} then suppressions.detail else excluded.detail end,
        event_id = case when ${weaker} then suppressions.event_id else excluded.event_id end,
        domain_id = case when ${weaker} then suppressions.domain_id
                         else coalesce(excluded.domain_id, suppressions.domain_id) end,
        -- An entry whose term ran out still holds the unique slot: a new bounce starts a new term.
        created_at = case when suppressions.expires_at is not null and suppressions.expires_at <= now()
                          then now() else suppressions.created_at end,
        expires_at = case when excluded.expires_at is null or suppressions.expires_at is null then null
                          when suppressions.expires_at <= now() then excluded.expires_at
                          else greatest(suppressions.expires_at, excluded.expires_at) end
      returning id, member_id, address, reason, detail, domain_id, created_at, expires_at)
    select s.*, d.domain from s left join domains d on d.id = s.domain_id`)
  const entry = toSuppression(rows[0]!)
  if (input.reason === 'unsubscribe') await emitUnsubscribeWebhook(db, entry)
  return entry
}

function toSuppression(r: Record<string, unknown>): Suppression {
  return {
    id: Number(r.id),
    memberId: Number(r.member_id),
    address: String(r.address),
    reason: r.reason as SuppressionReason,
    detail: (r.detail as string | null) ?? null,
    domainId: r.domain_id === null || r.domain_id === undefined ? null : Number(r.domain_id),
    domain: (r.domain as string | null) ?? null,
    createdAt: new Date(r.created_at as string),
    expiresAt: r.expires_at ? new Date(r.expires_at as string) : null,
  }
}

/** The member's standing (not removed, not expired) entry for an address, if any. */
export async function activeSuppression(db: Executor, memberId: number, address: string): Promise<Suppression | null> {
  const rows = await db.execute<Record<string, unknown>>(sql`
    select s.id, s.member_id, s.address, s.reason, s.detail, s.domain_id, d.domain, s.created_at, s.expires_at
    from suppressions s left join domains d on d.id = s.domain_id
    where s.member_id = ${memberId} and s.address = ${address.trim().toLowerCase()} and s.removed_at is null
      and (s.expires_at is null or s.expires_at > now())`)
  return rows[0] ? toSuppression(rows[0]) : null
}

/** Standing entries, optionally of one member, oldest first. */
export async function listSuppressions(
  db: Executor,
  opts: { memberId?: number; limit?: number } = {},
): Promise<Suppression[]> {
  const rows = await db
    .select({ s: suppressions, domain: domains.domain })
    .from(suppressions)
    .leftJoin(domains, eq(domains.id, suppressions.domainId))
    .where(
      and(
        isNull(suppressions.removedAt),
        sql`(${suppressions.expiresAt} is null or ${suppressions.expiresAt} > now())`,
        opts.memberId === undefined ? undefined : eq(suppressions.memberId, opts.memberId),
      ),
    )
    .orderBy(asc(suppressions.createdAt), asc(suppressions.id))
    .limit(opts.limit ?? 1000)
  return rows.map(({ s, domain }) => ({
    id: s.id,
    memberId: s.memberId,
    address: s.address,
    reason: s.reason,
    detail: s.detail,
    domainId: s.domainId,
    domain,
    createdAt: s.createdAt,
    expiresAt: s.expiresAt,
  }))
}

/**
 * Lifts a standing entry (a member or an operator decided the address is good again); the
 * row stays, with who removed it and when. False when there was nothing to remove.
 */
export async function removeSuppression(
  db: Executor,
  input: { memberId: number; address: string; by: string },
): Promise<boolean> {
  const rows = await db
    .update(suppressions)
    .set({ removedAt: new Date(), removedBy: input.by })
    .where(
      and(
        eq(suppressions.memberId, input.memberId),
        eq(suppressions.address, input.address.trim().toLowerCase()),
        isNull(suppressions.removedAt),
      ),
    )
    .returning({ id: suppressions.id })
  return rows.length > 0
}
