import { suppressions } from '@atmos/db'
import { and, asc, eq, isNull, sql } from 'drizzle-orm'
import type { Executor } from './executor.ts'

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
  /** Hard bounces only: how long the entry stands (default 30 days). Other entries never expire. */
  bounceForMs?: number | undefined
}

export type Suppression = {
  id: number
  memberId: number
  address: string
  reason: SuppressionReason
  detail: string | null
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
  const rows = await db.execute<Record<string, unknown>>(sql`
    insert into suppressions (member_id, address, reason, detail, event_id, expires_at)
    values (${input.memberId}, ${address}, ${input.reason}, ${input.detail ?? null}, ${input.eventId ?? null},
            ${expires ? expires.toISOString() : null}::timestamptz)
    on conflict (member_id, address) where removed_at is null do update set
      reason = case when ${weaker} then suppressions.reason else excluded.reason end,
      detail = case when ${weaker} then suppressions.detail else excluded.detail end,
      event_id = case when ${weaker} then suppressions.event_id else excluded.event_id end,
      -- An entry whose term ran out still holds the unique slot: a new bounce starts a new term.
      created_at = case when suppressions.expires_at is not null and suppressions.expires_at <= now()
                        then now() else suppressions.created_at end,
      expires_at = case when excluded.expires_at is null or suppressions.expires_at is null then null
                        when suppressions.expires_at <= now() then excluded.expires_at
                        else greatest(suppressions.expires_at, excluded.expires_at) end
    returning id, member_id, address, reason, detail, created_at, expires_at`)
  return toSuppression(rows[0]!)
}

function toSuppression(r: Record<string, unknown>): Suppression {
  return {
    id: Number(r.id),
    memberId: Number(r.member_id),
    address: String(r.address),
    reason: r.reason as SuppressionReason,
    detail: (r.detail as string | null) ?? null,
    createdAt: new Date(r.created_at as string),
    expiresAt: r.expires_at ? new Date(r.expires_at as string) : null,
  }
}

/** The member's standing (not removed, not expired) entry for an address, if any. */
export async function activeSuppression(db: Executor, memberId: number, address: string): Promise<Suppression | null> {
  const rows = await db.execute<Record<string, unknown>>(sql`
    select id, member_id, address, reason, detail, created_at, expires_at from suppressions
    where member_id = ${memberId} and address = ${address.trim().toLowerCase()} and removed_at is null
      and (expires_at is null or expires_at > now())`)
  return rows[0] ? toSuppression(rows[0]) : null
}

/** Standing entries, optionally of one member, oldest first. */
export async function listSuppressions(
  db: Executor,
  opts: { memberId?: number; limit?: number } = {},
): Promise<Suppression[]> {
  const rows = await db
    .select()
    .from(suppressions)
    .where(
      and(
        isNull(suppressions.removedAt),
        sql`(${suppressions.expiresAt} is null or ${suppressions.expiresAt} > now())`,
        opts.memberId === undefined ? undefined : eq(suppressions.memberId, opts.memberId),
      ),
    )
    .orderBy(asc(suppressions.createdAt), asc(suppressions.id))
    .limit(opts.limit ?? 1000)
  return rows.map((r) => ({
    id: r.id,
    memberId: r.memberId,
    address: r.address,
    reason: r.reason,
    detail: r.detail,
    createdAt: r.createdAt,
    expiresAt: r.expiresAt,
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
