import type { Pool } from '@atmos/db'
import { Batcher } from '@atmos/runtime'

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
 * The submission spool. Messages finished by concurrent sessions are committed together,
 * in one statement (group commit: see Batcher); the 250 to each waits for that commit.
 */
export class SubmissionSpool {
  private readonly sql: Pool
  private readonly batch = new Batcher(
    (reqs: SpoolRequest[]): Promise<Array<string[] | OverCapError>> =>
      reqs.length === 1
        ? spoolMessage(this.sql, reqs[0]!).then(
            (ids) => [ids],
            (err) => (err instanceof OverCapError ? [err] : Promise.reject(err)),
          )
        : spoolBatch(this.sql, reqs),
  )

  constructor(sql: Pool) {
    this.sql = sql
  }

  /** The ids of the spooled copies; throws OverCapError when the day's cap would be passed. */
  async spool(req: SpoolRequest): Promise<string[]> {
    const ids = await this.batch.call(req)
    if (ids instanceof OverCapError) throw ids
    // Refused in a batch with more of the member's messages: alone, as many as fit go in.
    return ids === RETRY_ALONE ? spoolMessage(this.sql, req) : ids
  }
}

const RETRY_ALONE: string[] = []

/**
 * Commits many submissions in one statement, each all or nothing. The day's counts are
 * added per member in one conditional upsert, so a member's messages in the batch go in
 * together only when all of them fit under the cap; when they do not, those that came
 * alone are over the cap, and the others are retried one by one (RETRY_ALONE), which
 * admits exactly as many as fit.
 */
async function spoolBatch(sql: Pool, reqs: SpoolRequest[]): Promise<Array<string[] | OverCapError>> {
  const copies = reqs.flatMap((r, i) =>
    r.copies.map((c) => [
      i,
      c.id,
      c.returnPath,
      c.body.length,
      c.body,
      c.recipient,
      c.domain,
      r.envelopeFrom,
      r.messageIdHeader,
      r.expiresAt.toISOString(),
    ]),
  )
  const rows = await sql<{ id: string }[]>`
    with req as (
      select * from unnest(${reqs.map((r) => r.memberId)}::bigint[], ${reqs.map((r) => r.day)}::text[]::date[],
                           ${reqs.map((r) => r.copies.length)}::int[], ${reqs.map((r) => r.cap)}::int[])
        with ordinality as r(member_id, day, n, cap, i)
    ), tally as (
      select member_id, day, sum(n)::int as n, count(*)::int as messages, min(cap) as cap
      from req group by member_id, day
    ), counted as (
      insert into send_volume as v (member_id, day, recipients, messages)
      select member_id, day, n, messages from tally where n <= cap
      on conflict (member_id, day) do update
        set recipients = v.recipients + excluded.recipients, messages = v.messages + excluded.messages
        where v.recipients + excluded.recipients
              <= (select t.cap from tally t where t.member_id = v.member_id and t.day = v.day)
      returning member_id, day
    ), copies (i, id, return_path, size, body, address, domain, envelope_from, message_id_header, expires_at) as (
      values ${sql(copies as never)}
    ), accepted as (
      select c.* from copies c
      join req r on r.i = c.i::int + 1
      join counted k on k.member_id = r.member_id and k.day = r.day
    ), spooled as (
      insert into messages (id, member_id, envelope_from, return_path, message_id_header, size, body, expires_at)
      select a.id::uuid, r.member_id, a.envelope_from, a.return_path, a.message_id_header, a.size::int,
             a.body::bytea, a.expires_at::timestamptz
      from accepted a join req r on r.i = a.i::int + 1
      returning id
    )
    insert into message_recipients (message_id, address, domain)
    select s.id, a.address, a.domain from spooled s join accepted a on a.id::uuid = s.id
    returning message_id::text as id`
  const spooled = new Set(rows.map((r) => r.id))
  const perDay = new Map<string, number>()
  for (const r of reqs) perDay.set(`${r.memberId}:${r.day}`, (perDay.get(`${r.memberId}:${r.day}`) ?? 0) + 1)
  return reqs.map((r) => {
    const ids = r.copies.map((c) => c.id).filter((id) => spooled.has(id))
    if (ids.length) return ids
    if ((perDay.get(`${r.memberId}:${r.day}`) ?? 0) > 1) return RETRY_ALONE
    return new OverCapError(`over the daily cap of ${r.cap}`)
  })
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
