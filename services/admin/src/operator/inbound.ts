import { type Db, INBOUND_KINDS, INBOUND_STATES } from '@atmos/db'
import { summarizeMessage } from '@atmos/mail-feedback'
import { sql } from 'drizzle-orm'
import { z } from 'zod'

// What fbl-ingest received on port 25, for the operator: operator mail (postmaster@,
// abuse@ …) with where its forward stands, and the reports it quarantined with the reason.

export const inboundQuery = z.object({
  kind: z.enum(INBOUND_KINDS).optional(),
  state: z.enum(INBOUND_STATES).optional(),
  /** Newest first; the next page starts below the last id seen. */
  before: z.coerce.number().int().positive().optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
})

export type InboundQuery = z.infer<typeof inboundQuery>

export type InboundItem = {
  id: number
  receivedAt: string
  remoteAddress: string | null
  mailFrom: string
  rcptTo: string[]
  size: number
  kind: string
  state: string
  subject: string
  from: string
  /** Operator mail sent on to the operator inbox, and how its delivery stands. */
  forward: { messageId: string; to: string; state: string; attempts: number; lastReply: string | null } | null
  /** Why it was kept back (unreadable or unattributable report). */
  quarantine: { reason: string; at: string } | null
}

type Row = {
  id: string
  received_at: string
  remote_address: string | null
  mail_from: string
  rcpt_to: string[]
  size: number
  kind: string
  state: string
  head: Buffer
  forward_id: string | null
  forward_to: string | null
  forward_state: string | null
  forward_attempts: number | null
  forward_reply: string | null
  quarantine_reason: string | null
  quarantined_at: string | null
}

/** Enough of the message to read its header block: the list never loads whole messages. */
const HEAD_BYTES = 16 * 1024

export async function listInbound(db: Db, q: InboundQuery): Promise<InboundItem[]> {
  const rows = await db.execute<Row>(sql`
    select i.id::text, to_char(i.received_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as received_at,
           i.remote_address, i.mail_from, i.rcpt_to, i.size, i.kind, i.state,
           substring(i.raw from 1 for ${HEAD_BYTES}) as head,
           r.message_id::text as forward_id, r.address as forward_to, r.state as forward_state,
           r.attempts as forward_attempts, r.last_reply as forward_reply,
           q.reason as quarantine_reason,
           to_char(q.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as quarantined_at
    from inbound_messages i
    left join message_recipients r on r.message_id = i.forwarded_message_id
    left join lateral (select reason, created_at from quarantined_reports
                       where inbound_id = i.id and released_at is null order by id desc limit 1) q on true
    where ${q.kind ? sql`i.kind = ${q.kind}` : sql`true`}
      and ${q.state ? sql`i.state = ${q.state}` : sql`true`}
      and ${q.before ? sql`i.id < ${q.before}` : sql`true`}
    order by i.id desc
    limit ${q.limit}`)
  return rows.map((r) => {
    const summary = summarizeMessage(r.head)
    return {
      id: Number(r.id),
      receivedAt: r.received_at,
      remoteAddress: r.remote_address,
      mailFrom: r.mail_from,
      rcptTo: r.rcpt_to,
      size: r.size,
      kind: r.kind,
      state: r.state,
      subject: summary.subject,
      from: summary.from,
      forward: r.forward_id
        ? {
            messageId: r.forward_id,
            to: r.forward_to ?? '',
            state: r.forward_state ?? 'unknown',
            attempts: r.forward_attempts ?? 0,
            lastReply: r.forward_reply,
          }
        : null,
      quarantine: r.quarantine_reason ? { reason: r.quarantine_reason, at: r.quarantined_at ?? '' } : null,
    }
  })
}

/** The message as received, byte for byte, or undefined. */
export async function inboundRaw(db: Db, id: number): Promise<Buffer | undefined> {
  const rows = await db.execute<{ raw: Buffer }>(sql`select raw from inbound_messages where id = ${id}`)
  return rows[0]?.raw
}
