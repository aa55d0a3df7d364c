import type { Db } from '@atmos/db'
import { sql } from 'drizzle-orm'
import { z } from 'zod'

// Complaints fbl-ingest recorded, for the operator. Only a report that authenticates as a
// configured feedback-loop provider counts toward suspension; the others are recorded with
// why not (details.counted false, details.notCounted) and are the operator's to look at:
// a stranger forging reports, or a provider whose identity changed.

export const complaintsQuery = z.object({
  /** false: only the complaints that did not count; true: only those that did. */
  counted: z.enum(['true', 'false']).optional(),
  /** Newest first; the next page starts below the last id seen. */
  before: z.coerce.number().int().positive().optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
})

export type ComplaintsQuery = z.infer<typeof complaintsQuery>

export type ComplaintItem = {
  id: number
  occurredAt: string
  member: string | null
  /** The member's domain the complained-about message was sent as, when a token named the message. */
  domain: string | null
  recipient: string | null
  feedbackType: string | null
  source: string
  counted: boolean
  /** Why it did not count, as fbl-ingest recorded it. */
  notCounted: string | null
  /** The report as received: GET /api/operator/inbound/:id/raw. */
  inboundId: number | null
}

type Row = {
  id: string
  occurred_at: string
  did: string | null
  domain: string | null
  recipient: string | null
  feedback_type: string | null
  source: string
  counted: boolean
  not_counted: string | null
  inbound_id: string | null
}

// A complaint recorded before providers were checked has no `counted`: it counted.
const COUNTED = sql`coalesce((e.details ->> 'counted')::boolean, true)`

export async function listComplaints(db: Db, q: ComplaintsQuery): Promise<ComplaintItem[]> {
  const rows = await db.execute<Row>(sql`
    select e.id::text, to_char(e.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as occurred_at,
           m.did, d.domain, e.recipient, e.feedback_type, e.source, ${COUNTED} as counted,
           left(e.details ->> 'notCounted', 500) as not_counted, e.inbound_id::text
    from feedback_events e
    left join members m on m.id = e.member_id
    left join messages msg on msg.id = e.message_id
    left join domains d on d.id = msg.domain_id
    where e.type = 'complaint'
      and ${q.counted ? sql`${COUNTED} = ${q.counted === 'true'}` : sql`true`}
      and ${q.before ? sql`e.id < ${q.before}` : sql`true`}
    order by e.id desc
    limit ${q.limit}`)
  return rows.map((r) => ({
    id: Number(r.id),
    occurredAt: r.occurred_at,
    member: r.did,
    domain: r.domain,
    recipient: r.recipient,
    feedbackType: r.feedback_type,
    source: r.source,
    counted: r.counted,
    notCounted: r.not_counted,
    inboundId: r.inbound_id === null ? null : Number(r.inbound_id),
  }))
}
