import type { Db } from '@atmos/db'
import { sql } from 'drizzle-orm'
import { likePrefix } from '../account/message-log.ts'

/**
 * The console's members list and a member's history: a search by DID (exact), handle or
 * domain (prefix), paged newest member first by id; recent status changes with their reasons,
 * feedback events, and the labels our labeler holds on the DID now. Every list is limited.
 */

export const MEMBERS_PAGE = 25

export type MemberRow = { id: number; did: string; handle: string | null; status: string; statusReason: string | null }

/** Search text is at most this long: a DID is longer than a handle or domain, and 2048 bounds it. */
export const MAX_SEARCH = 2048

export async function searchMembers(
  db: Db,
  q: { text: string; before?: number | undefined },
): Promise<{ items: MemberRow[]; next: number | null }> {
  const text = q.text.trim().toLowerCase().slice(0, MAX_SEARCH)
  const prefix = likePrefix(text)
  // A DID is matched exactly (members_did_key); handles and domains by prefix, the domain through
  // domains_member_idx per member. Members are walked by id, newest first, so a page costs at most
  // the members scanned until 25 match.
  const match = text
    ? sql`and (m.did = ${text} or lower(m.handle) like ${prefix} or exists (
        select 1 from domains d where d.member_id = m.id and d.removed_at is null and d.domain like ${prefix}))`
    : sql``
  const rows = await db.execute<{
    id: string
    did: string
    handle: string | null
    status: string
    status_reason: string | null
  }>(sql`
    select m.id::text, m.did, m.handle, m.status, m.status_reason from members m
    where ${q.before ? sql`m.id < ${q.before}` : sql`true`} ${match}
    order by m.id desc limit ${MEMBERS_PAGE + 1}`)
  const items = rows.slice(0, MEMBERS_PAGE).map((r) => ({
    id: Number(r.id),
    did: r.did,
    handle: r.handle,
    status: r.status,
    statusReason: r.status_reason,
  }))
  return { items, next: rows.length > MEMBERS_PAGE ? items.at(-1)!.id : null }
}

export async function memberIdOf(db: Db, did: string): Promise<number | null> {
  const [r] = await db.execute<{ id: string }>(sql`select id::text from members where did = ${did}`)
  return r ? Number(r.id) : null
}

/** Whether `domain` is a live domain of the member (domains_domain_held_key). */
export async function heldDomain(db: Db, memberId: number, domain: string): Promise<boolean> {
  const [r] = await db.execute<{ n: number }>(
    sql`select 1 as n from domains where domain = ${domain} and member_id = ${memberId} and removed_at is null`,
  )
  return r !== undefined
}

export type StatusChange = {
  at: Date
  domain: string | null
  from: string | null
  to: string
  reason: string
  actor: string
}

/** The member's last 20 status changes (its own and its domains'), newest first. */
export async function recentStatusChanges(db: Db, memberId: number): Promise<StatusChange[]> {
  const rows = await db.execute<{
    at: Date
    domain: string | null
    from_status: string | null
    to_status: string
    reason: string
    actor: string
  }>(sql`
    select c.at, d.domain, c.from_status, c.to_status, c.reason, c.actor
    from member_status_changes c left join domains d on d.id = c.domain_id
    where c.member_id = ${memberId} order by c.at desc, c.id desc limit 20`)
  return rows.map((r) => ({
    at: new Date(r.at),
    domain: r.domain,
    from: r.from_status,
    to: r.to_status,
    reason: r.reason,
    actor: r.actor,
  }))
}

export type FeedbackRow = {
  at: Date
  type: string
  recipient: string | null
  source: string
  status: string | null
  counted: boolean
}

/** The member's last 20 feedback events of any type, newest first. */
export async function recentFeedback(db: Db, memberId: number): Promise<FeedbackRow[]> {
  const rows = await db.execute<{
    at: Date
    type: string
    recipient: string | null
    source: string
    status: string | null
    counted: boolean
  }>(sql`
    select occurred_at as at, type, recipient, source, status,
      coalesce((details->>'verified')::boolean, true) and coalesce((details->>'counted')::boolean, true) as counted
    from feedback_events where member_id = ${memberId}
    order by occurred_at desc limit 20`)
  return rows.map((r) => ({ ...r, at: new Date(r.at) }))
}

/**
 * The labels standing on the DID in our label stream: for each value, its newest row (through
 * labels_uri_c_seq_idx), kept unless that row negates it or it has expired.
 */
export async function currentLabels(db: Db, did: string, now = new Date()): Promise<string[]> {
  const rows = await db.execute<{ val: string }>(sql`
    select val from (
      select distinct on (val) val, neg, exp from labels
      where (uri collate "C") = ${did} order by val, seq desc limit 1000
    ) l
    where not neg and (exp is null or exp > ${now.toISOString()})
    order by val`)
  return rows.map((r) => r.val)
}
