import { randomBytes } from 'node:crypto'
import type { Db, Tx, WebhookEventType } from '@atmos/db'
import { sql as dsql } from 'drizzle-orm'

/**
 * Where an event is written: a drizzle handle or transaction (`db`, `tx`), or a postgres.js
 * pool or transaction (`db.$client`, `sql.begin`'s). Pass the transaction that records what
 * happened, so the event commits (or not) with it: the outbox is the record, nothing is lost
 * between the change and its announcement.
 */
export type EventWriter = Db | Tx | { unsafe: (query: string, params: never[]) => PromiseLike<unknown[]> }

export type EmitType = WebhookEventType | 'test'

export type NewEvent = {
  /** The member, by id or (the labeler, which knows DIDs) by DID; a DID of no member drops the event. */
  memberId?: number | undefined
  did?: string | undefined
  type: EmitType
  /** The event's `data`: ids and facts, never a message body or a secret. */
  data: Record<string, unknown>
  /** Only this endpoint (the account's "send test event"); otherwise every enabled endpoint subscribed to the type. */
  endpointId?: number | undefined
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

/**
 * A Standard Webhooks message id: `msg_` and 26 Crockford base32 characters of 48 bits of
 * milliseconds then 80 random bits, so ids sort by creation (a receiver's log reads in order)
 * and never collide in practice.
 */
export function newEventId(now = Date.now()): string {
  const bytes = Buffer.concat([Buffer.alloc(6), randomBytes(10)])
  bytes.writeUIntBE(now, 0, 6)
  let bits = 0n
  for (const b of bytes) bits = (bits << 8n) | BigInt(b)
  let out = ''
  for (let i = 0; i < 26; i++) {
    out = CROCKFORD[Number(bits & 31n)] + out
    bits >>= 5n
  }
  return `msg_${out}`
}

// One statement, whatever the number of events: the events that at least one enabled
// endpoint wants are written with one delivery row per such endpoint; the others are not
// written at all, so a member without webhooks costs one index probe per event. The input
// is one jsonb parameter (drizzle and postgres.js bind it alike).
const EMIT = `
with raw as (
  select * from jsonb_to_recordset($1::jsonb) as i(id text, member_id bigint, did text, type text, data jsonb, endpoint_id bigint)
), input as (
  select r.id, coalesce(r.member_id, m.id) as member_id, r.type, r.data, r.endpoint_id
  from raw r left join members m on r.member_id is null and m.did = r.did
), targets as (
  select i.id, e.id as endpoint_id
  from input i join webhook_endpoints e on e.member_id = i.member_id and e.disabled_at is null
  where (i.endpoint_id is null and i.type = any(e.events)) or e.id = i.endpoint_id
), ev as (
  insert into webhook_events (id, member_id, type, payload)
  select i.id, i.member_id, i.type, i.data from input i where i.id in (select id from targets)
  returning id
)
insert into webhook_deliveries (event_id, endpoint_id)
select t.id, t.endpoint_id from targets t join ev on ev.id = t.id
returning event_id`

const [EMIT_HEAD, EMIT_TAIL] = EMIT.split('$1') as [string, string]

/**
 * Writes events into the webhooks outbox with their deliveries, in the caller's transaction.
 * Returns the ids of the events written (an event no endpoint wants is dropped).
 */
export async function emitEvents(writer: EventWriter, events: NewEvent[]): Promise<string[]> {
  if (!events.length) return []
  const input = JSON.stringify(
    events.map((e) => ({
      id: newEventId(),
      member_id: e.memberId ?? null,
      did: e.memberId === undefined ? (e.did ?? null) : null,
      type: e.type,
      data: e.data,
      endpoint_id: e.endpointId ?? null,
    })),
  )
  let rows: unknown[]
  if ('unsafe' in writer) {
    rows = await writer.unsafe(EMIT, [input as never])
  } else {
    rows = await (writer as Db).execute(dsql`${dsql.raw(EMIT_HEAD)}${input}${dsql.raw(EMIT_TAIL)}`)
  }
  return [...new Set((rows as Array<{ event_id: string }>).map((r) => r.event_id))]
}

/** One event; see emitEvents. Returns its id, or null when no enabled endpoint wants it. */
export async function emitEvent(writer: EventWriter, event: NewEvent): Promise<string | null> {
  const [id] = await emitEvents(writer, [event])
  return id ?? null
}
