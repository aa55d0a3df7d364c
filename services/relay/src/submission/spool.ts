import type { Pool } from '@atmos/db'

export type SpooledCopy = {
  /** messages.id: also the token in the return path and the reference header. */
  id: string
  recipient: string
  domain: string
  returnPath: string
  /** The signed message as it goes out. */
  body: Buffer
}

export type SpoolRequest = {
  memberId: number
  envelopeFrom: string
  messageIdHeader: string
  copies: SpooledCopy[]
  expiresAt: Date
  /** Warming: the day counted on and the cap it must stay within. */
  day: string
  cap: number
}

export class OverCapError extends Error {
  override name = 'OverCapError'
}

/**
 * Commits every copy (one message row per recipient) with its recipient row and the day's
 * count, atomically: either all of it is durable before the 250, or none of it is and
 * nothing was counted.
 *
 * One statement, committed on its own, rather than a transaction of four: each round trip
 * to Postgres costs the submission more than the work it does (see bench/), and a single
 * statement is atomic just the same. The count is a conditional upsert, so concurrent
 * submissions on any replica serialize on the member's row for the day and the sum never
 * passes the cap; the copies are inserted only when the count went in. The recipients'
 * foreign key to their message row is checked at the end of the statement, when both exist.
 */
export async function spoolMessage(sql: Pool, req: SpoolRequest): Promise<string[]> {
  if (req.copies.length === 0) return []
  if (req.copies.length > req.cap) throw new OverCapError(`over the daily cap of ${req.cap}`)
  const copies = req.copies.map((c) => [c.id, c.returnPath, c.body.length, c.body, c.recipient, c.domain])
  const rows = await sql<{ id: string }[]>`
    with counted as (
      insert into send_volume as v (member_id, day, recipients, messages)
      values (${req.memberId}, ${req.day}::date, ${req.copies.length}, 1)
      on conflict (member_id, day) do update
        set recipients = v.recipients + excluded.recipients, messages = v.messages + 1
        where v.recipients + excluded.recipients <= ${req.cap}
      returning 1
    ), copies (id, return_path, size, body, address, domain) as (
      values ${sql(copies as never)}
    ), spooled as (
      insert into messages (id, member_id, envelope_from, return_path, message_id_header, size, body, expires_at)
      select c.id::uuid, ${req.memberId}, ${req.envelopeFrom}, c.return_path, ${req.messageIdHeader},
             c.size::int, c.body::bytea, ${req.expiresAt.toISOString()}::timestamptz
      from copies c where exists (select 1 from counted)
      returning id
    )
    insert into message_recipients (message_id, address, domain)
    select s.id, c.address, c.domain from spooled s join copies c on c.id::uuid = s.id
    returning message_id::text as id`
  if (rows.length === 0) throw new OverCapError(`over the daily cap of ${req.cap}`)
  // In the order of the copies, as the caller enqueues and reports them.
  const spooled = new Set(rows.map((r) => r.id))
  return req.copies.map((c) => c.id).filter((id) => spooled.has(id))
}
