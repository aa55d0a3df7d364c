import type { Db, RecipientState } from '@atmos/db'
import { type SQL, sql } from 'drizzle-orm'
import { NotMemberDomainError } from './figures.ts'
import { memberDomainIds } from './owner.ts'

/**
 * The member's message log: one row a recipient of the member's messages of the last 30
 * days, newest first, with what happened to it. Paged by keyset (the received time and the
 * recipient's id of the last row shown), so a page never repeats or skips rows when new mail
 * arrives while the member reads. Searchable by recipient address or Message-ID, exact or
 * by prefix; the search narrows the member's own rows and never widens past them.
 */

export const LOG_DAYS = 30
export const LOG_PAGE_SIZE = 50
export const MAX_PAGE_SIZE = 200
/** An address is at most 254 octets (RFC 5321 path limit less the brackets). */
const MAX_ADDRESS = 254
/** Message-IDs have no limit of their own; anything longer than this is not one we would have. */
const MAX_MESSAGE_ID = 255

export type LogSearch = { field: 'recipient' | 'messageId'; value: string; prefix: boolean }

export type LogQuery = {
  search?: LogSearch | undefined
  /** Only mail sent as this domain (one of the member's, live or not). */
  domain?: string | undefined
  /** The `next` of the page before. */
  after?: string | undefined
  limit?: number | undefined
}

export type LogEntry = {
  /** message_recipients.id. */
  id: number
  /** messages.id (the relay's own reference, also in the VERP return path). */
  messageId: string
  /** The Message-ID header as sent, brackets included; null for none recorded. */
  messageIdHeader: string | null
  /** The member's domain the message was sent as. */
  domain: string | null
  envelopeFrom: string
  recipient: string
  state: RecipientState
  attempts: number
  /** The last answer from the remote MX, or why the relay stopped. */
  lastReply: string | null
  receivedAt: Date
  updatedAt: Date
  lastAttemptAt: Date | null
  nextAttemptAt: Date | null
  /** A hard bounce reported after delivery (a DSN), and a complaint, attributed to this recipient. */
  bouncedLater: boolean
  complained: boolean
}

export type LogPage = { entries: LogEntry[]; next: string | null }

/** A search or cursor the log refuses, with a message fit to show next to the form. */
export class LogQueryError extends Error {
  override name = 'LogQueryError'
}

/**
 * Checks a search as typed (from a GET form: field, text, prefix). Empty text means no
 * search. Angle brackets around a Message-ID are optional; addresses compare
 * case-insensitively (as feedback does), Message-IDs exactly.
 */
export function parseSearch(
  field: string | undefined,
  value: string | undefined,
  prefix: boolean,
): LogSearch | undefined {
  const text = (value ?? '').trim()
  if (!text) return undefined
  if (field !== 'recipient' && field !== 'messageId') {
    throw new LogQueryError('search by: recipient or messageId')
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
  if (/[\u0000-\u001f\u007f\s]/.test(text))
    throw new LogQueryError('the search may not contain spaces or control characters')
  if (field === 'recipient') {
    if (text.length > MAX_ADDRESS) throw new LogQueryError(`an address is at most ${MAX_ADDRESS} characters`)
    return { field, value: text.toLowerCase(), prefix }
  }
  const id = text.replace(/^</, '').replace(/>$/, '')
  if (!id) throw new LogQueryError('a Message-ID looks like <something@host>')
  if (id.length > MAX_MESSAGE_ID) throw new LogQueryError(`a Message-ID is at most ${MAX_MESSAGE_ID} characters here`)
  return { field, value: id, prefix }
}

/** `\`, `%` and `_` stand for themselves in the pattern: a search for `a_b` must not match `axb`. */
export function likePrefix(text: string): string {
  return `${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`
}

/** What the log form was filled with, echoed back into it. */
export type LogForm = { field: 'recipient' | 'messageId'; q: string; prefix: boolean; domain: string }

/**
 * The log's query from a GET request's parameters (`field`, `q`, `prefix`, `domain`,
 * `after`), each bounded; `error` says what was refused (the page shows it by the form and
 * the unsearched log, or answers 400). Whether the domain is the member's is checked by
 * messageLog.
 */
export function readLogRequest(params: URLSearchParams): { query: LogQuery; form: LogForm; error?: string } {
  const clip = (v: string | null, n: number) => (v ?? '').slice(0, n)
  const form: LogForm = {
    field: params.get('field') === 'messageId' ? 'messageId' : 'recipient',
    q: clip(params.get('q'), 1000),
    prefix: params.get('prefix') === '1',
    domain: clip(params.get('domain'), 253).trim().toLowerCase(),
  }
  const after = clip(params.get('after'), 65)
  try {
    const search = parseSearch(params.get('field') ?? 'recipient', form.q, form.prefix)
    if (after) decodeCursor(after)
    return { query: { search, domain: form.domain || undefined, after: after || undefined }, form }
  } catch (err) {
    if (!(err instanceof LogQueryError)) throw err
    return { query: { domain: form.domain || undefined }, form, error: err.message }
  }
}

type Cursor = { micros: string; id: string }

function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.micros}.${c.id}`).toString('base64url')
}

function decodeCursor(text: string): Cursor {
  const m = /^(\d{1,17})\.(\d{1,18})$/.exec(text.length <= 64 ? Buffer.from(text, 'base64url').toString('latin1') : '')
  if (!m) throw new LogQueryError('the page link is not valid; start from the newest page')
  return { micros: m[1]!, id: m[2]! }
}

/**
 * One page of the member's log. A domain that is not the member's is refused
 * (NotMemberDomainError), a cursor that is not one of ours too (LogQueryError).
 */
export async function messageLog(db: Db, memberId: number, query: LogQuery = {}, now = new Date()): Promise<LogPage> {
  let domainIds: number[] | undefined
  if (query.domain !== undefined) {
    const name = query.domain.trim().toLowerCase()
    domainIds = (await memberDomainIds(db, memberId)).filter((d) => d.domain === name).map((d) => d.id)
    if (!domainIds.length) throw new NotMemberDomainError(`${name} is not a domain of this account`)
  }
  const limit = Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(query.limit ?? LOG_PAGE_SIZE)))
  const rows = await db.execute<LogRow>(messageLogSql(memberId, { ...query, limit }, domainIds, now))
  const more = rows.length > limit
  const page = rows.slice(0, limit)
  const last = page.at(-1)
  return {
    entries: page.map((r) => ({
      id: Number(r.id),
      messageId: r.message_id,
      messageIdHeader: r.message_id_header,
      domain: r.domain,
      envelopeFrom: r.envelope_from,
      recipient: r.address,
      state: r.state,
      attempts: r.attempts,
      lastReply: r.last_reply,
      receivedAt: new Date(r.received_at),
      updatedAt: new Date(r.updated_at),
      lastAttemptAt: r.last_attempt_at ? new Date(r.last_attempt_at) : null,
      nextAttemptAt: r.next_attempt_at ? new Date(r.next_attempt_at) : null,
      bouncedLater: r.bounced_later === true,
      complained: r.complained === true,
    })),
    next: more && last ? encodeCursor({ micros: last.micros, id: last.id }) : null,
  }
}

type LogRow = {
  id: string
  message_id: string
  message_id_header: string | null
  domain: string | null
  envelope_from: string
  address: string
  state: RecipientState
  attempts: number
  last_reply: string | null
  received_at: string
  micros: string
  updated_at: string
  last_attempt_at: string | null
  next_attempt_at: string | null
  bounced_later: boolean | null
  complained: boolean | null
}

/**
 * The log statement (one more row than the page, to tell whether there is a next one),
 * exported so a test can EXPLAIN it. `domainIds` must already be checked to be the member's.
 * The member's messages of the window come through messages_member_idx, walked backwards
 * from the cursor; the search filters those, so it can never reach another member's rows.
 */
export function messageLogSql(
  memberId: number,
  query: LogQuery & { limit: number },
  domainIds: number[] | undefined,
  now: Date,
): SQL {
  const since = new Date(now.getTime() - LOG_DAYS * 86_400_000).toISOString()
  const filters: SQL[] = []
  if (domainIds)
    filters.push(
      sql`and m.domain_id in (${sql.join(
        domainIds.map((id) => sql`${id}`),
        sql`, `,
      )})`,
    )
  const s = query.search
  let recipientFilter = sql``
  if (s?.field === 'recipient') {
    recipientFilter = s.prefix
      ? sql`and lower(r.address) like ${likePrefix(s.value)} escape '\\'`
      : sql`and lower(r.address) = ${s.value}`
  } else if (s?.field === 'messageId') {
    const header = sql`btrim(m.message_id_header, ' <>')`
    filters.push(
      s.prefix ? sql`and ${header} like ${likePrefix(s.value)} escape '\\'` : sql`and ${header} = ${s.value}`,
    )
  }
  if (query.after) {
    const c = decodeCursor(query.after)
    // Microseconds as text to an interval: exact, where a float of seconds would round. The
    // plain bound on received_at is what the index range uses; the row comparison breaks ties.
    const at = sql`(timestamptz 'epoch' + (${c.micros}::text || ' microseconds')::interval)`
    filters.push(sql`and m.received_at <= ${at} and (m.received_at, r.id) < (${at}, ${c.id}::bigint)`)
  }
  return sql`
    select r.id::text, m.id::text as message_id, m.message_id_header, d.domain, m.envelope_from, r.address, r.state,
      r.attempts, r.last_reply, m.received_at, (extract(epoch from m.received_at) * 1000000)::bigint::text as micros,
      r.updated_at, la.started_at as last_attempt_at, r.next_attempt_at, f.bounced_later, f.complained
    from messages m
    -- Each message's recipients by an index probe, the search filtering them there: the
    -- subquery (kept whole by offset 0) stops the planner from matching the search against the
    -- whole pool's recipients first (measured: a sequential scan of message_recipients).
    cross join lateral (
      select r.id, r.address, r.state, r.attempts, r.last_reply, r.updated_at, r.next_attempt_at
      from message_recipients r where r.message_id = m.id ${recipientFilter} offset 0) r
    left join domains d on d.id = m.domain_id and d.member_id = m.member_id
    left join lateral (
      select da.started_at from delivery_attempts da where da.recipient_id = r.id
      order by da.started_at desc limit 1) la on true
    left join lateral (
      select bool_or(e.type = 'hard_bounce' and r.state = 'delivered') as bounced_later,
             bool_or(e.type = 'complaint') as complained
      from feedback_events e
      where e.message_id = m.id and (e.recipient is null or e.recipient = lower(r.address))) f on true
    where m.member_id = ${memberId} and m.received_at >= ${since}::timestamptz
      ${sql.join(filters, sql` `)}
    order by m.received_at desc, r.id desc
    limit ${query.limit + 1}`
}
