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
  /** The member's domain the message is sent as: its cap counts it. */
  domainId: number
  envelopeFrom: string
  messageIdHeader: string
  /** X-Atmos-Category, normalized; null when the member named none. */
  category?: string | null
  /** messages.body_hash: set for transactional categories only. */
  bodyHash?: string | null
  copies: SpooledCopy[]
  expiresAt: Date
  /** Warming: the day counted on and the cap it must stay within. */
  day: string
  cap: number
  /** The sender asked for REQUIRETLS (RFC 8689): messages.require_tls. */
  requireTls?: boolean
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
  private readonly batch = new Batcher((reqs: SpoolRequest[]) => spoolBatch(this.sql, reqs))

  constructor(sql: Pool) {
    this.sql = sql
  }

  /** The ids of the spooled copies; throws OverCapError when the day's cap would be passed. */
  async spool(req: SpoolRequest): Promise<string[]> {
    const ids = await this.batch.call(req)
    if (ids instanceof OverCapError) throw ids
    // Refused in a batch with more of the domain's messages: alone, as many as fit go in.
    return ids === RETRY_ALONE ? spoolMessage(this.sql, req) : ids
  }
}

const RETRY_ALONE: string[] = []

/** One submission alone: its copies, or OverCapError. */
export async function spoolMessage(sql: Pool, req: SpoolRequest): Promise<string[]> {
  const [ids] = await spoolBatch(sql, [req])
  if (ids instanceof OverCapError) throw ids
  return ids ?? []
}

/**
 * Commits many submissions in one statement, each all or nothing, so that either all of a
 * message is durable before its 250, or none of it is and nothing was counted. The day's
 * counts are added per domain in one conditional upsert (concurrent statements on any
 * replica serialize on the domain's row, so the sum never passes the cap), and a domain's
 * messages in the batch go in together only when all of them fit; when they do not, one
 * that came alone is over the cap, and the others are retried one by one (RETRY_ALONE),
 * which admits exactly as many as fit. The recipients' foreign key to their message row
 * is checked at the end of the statement, when both exist.
 *
 * Every input is an array parameter, so the text is the same for any batch and Postgres
 * keeps it prepared: a statement that changed with the batch size would be parsed anew
 * on each connection for each size. Bodies go as hex (which is how a bytea parameter
 * travels anyway) and are decoded by Postgres.
 */
async function spoolBatch(sql: Pool, reqs: SpoolRequest[]): Promise<Array<string[] | OverCapError>> {
  const copies = reqs.flatMap((r, i) => r.copies.map((c) => ({ r, c, i: i + 1 })))
  const col = <T>(f: (x: (typeof copies)[number]) => T) => copies.map(f)
  const rows = await sql<{ id: string }[]>`
    with req as (
      select * from unnest(${reqs.map((r) => r.memberId)}::bigint[], ${reqs.map((r) => r.domainId)}::bigint[],
                           ${reqs.map((r) => r.day)}::text[]::date[],
                           ${reqs.map((r) => r.copies.length)}::int[], ${reqs.map((r) => r.cap)}::int[],
                           ${reqs.map((r) => r.envelopeFrom)}::text[], ${reqs.map((r) => r.messageIdHeader)}::text[],
                           ${reqs.map((r) => r.expiresAt.toISOString())}::text[]::timestamptz[],
                           ${reqs.map((r) => (r.requireTls ? 'true' : 'false'))}::text[]::boolean[],
                           ${reqs.map((r) => r.category ?? '')}::text[], ${reqs.map((r) => r.bodyHash ?? '')}::text[])
        with ordinality as r(member_id, domain_id, day, n, cap, envelope_from, message_id_header, expires_at, require_tls, category, body_hash, i)
    ), tally as (
      select domain_id, min(member_id) as member_id, day, sum(n)::int as n, count(*)::int as messages, min(cap) as cap
      from req group by domain_id, day
    ), counted as (
      insert into send_volume as v (member_id, domain_id, day, recipients, messages)
      select member_id, domain_id, day, n, messages from tally where n <= cap
      on conflict (domain_id, day) do update
        set recipients = v.recipients + excluded.recipients, messages = v.messages + excluded.messages
        where v.recipients + excluded.recipients
              <= (select t.cap from tally t where t.domain_id = v.domain_id and t.day = v.day)
      returning domain_id, day
    ), accepted as (
      select c.*, r.member_id, r.domain_id, r.envelope_from, r.message_id_header, r.expires_at, r.require_tls, r.category, r.body_hash
      from unnest(${col((x) => x.i)}::int[], ${col((x) => x.c.id)}::text[]::uuid[], ${col((x) => x.c.returnPath)}::text[],
                  ${col((x) => x.c.body.toString('hex'))}::text[], ${col((x) => x.c.recipient)}::text[],
                  ${col((x) => x.c.domain)}::text[])
        as c(i, id, return_path, body_hex, address, domain)
      join req r on r.i = c.i
      join counted k on k.domain_id = r.domain_id and k.day = r.day
    ), spooled as (
      insert into messages (id, member_id, domain_id, envelope_from, return_path, message_id_header, size, body, expires_at, require_tls, category, body_hash)
      select a.id, a.member_id, a.domain_id, a.envelope_from, a.return_path, a.message_id_header, length(a.body_hex) / 2,
             decode(a.body_hex, 'hex'), a.expires_at, a.require_tls, nullif(a.category, ''),
             nullif(a.body_hash, '')
      from accepted a
      returning id
    )
    insert into message_recipients (message_id, address, domain)
    select s.id, a.address, a.domain from spooled s join accepted a on a.id = s.id
    returning message_id::text as id`
  const spooled = new Set(rows.map((r) => r.id))
  const perDay = new Map<string, number>()
  for (const r of reqs) perDay.set(`${r.domainId}:${r.day}`, (perDay.get(`${r.domainId}:${r.day}`) ?? 0) + 1)
  return reqs.map((r) => {
    const ids = r.copies.map((c) => c.id).filter((id) => spooled.has(id))
    if (ids.length) return ids
    if ((perDay.get(`${r.domainId}:${r.day}`) ?? 0) > 1) return RETRY_ALONE
    return new OverCapError(`over the daily cap of ${r.cap}`)
  })
}
