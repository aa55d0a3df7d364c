import type { Pool } from '@atmos/db'
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from '@atmos/db'
import type { Keyring } from '@atmos/secrets'
import { asDate, asDateOrNull } from './dates.ts'
import { sealSecret } from './secrets.ts'
import { formatSecret, newSecret } from './signature.ts'

// A member's endpoints, as the account manages them. Every function is scoped by the member
// id: an endpoint id of another member's is the same "not found" as one of no one's.

/** Endpoints one member may hold: each costs the dispatcher work for every event. */
export const MAX_ENDPOINTS_PER_MEMBER = 10

export type Endpoint = {
  id: number
  url: string
  events: WebhookEventType[]
  description: string
  disabledAt: Date | null
  disabledReason: string | null
  consecutiveFailures: number
  failingSince: Date | null
  lastSuccessAt: Date | null
  previousSecretExpiresAt: Date | null
  createdAt: Date
}

export class EndpointError extends Error {
  override name = 'EndpointError'
}

/** The event types as chosen in a form: known ones only, at least one, each once. */
export function checkEventTypes(input: readonly string[]): WebhookEventType[] {
  const known = new Set<string>(WEBHOOK_EVENT_TYPES)
  const chosen = [...new Set(input)].filter((t) => known.has(t)) as WebhookEventType[]
  if (chosen.length !== new Set(input).size) throw new EndpointError('Choose among the listed event types only.')
  if (!chosen.length) throw new EndpointError('Choose at least one event type.')
  return WEBHOOK_EVENT_TYPES.filter((t) => chosen.includes(t))
}

const COLUMNS = `id::int as id, url, events, description, disabled_at, disabled_reason, consecutive_failures,
  failing_since, last_success_at, previous_secret_expires_at, created_at`

type Row = {
  id: number
  url: string
  events: WebhookEventType[]
  description: string
  disabled_at: Date | null
  disabled_reason: string | null
  consecutive_failures: number
  failing_since: Date | null
  last_success_at: Date | null
  previous_secret_expires_at: Date | null
  created_at: Date
}

const toEndpoint = (r: Row): Endpoint => ({
  id: Number(r.id),
  url: r.url,
  events: r.events,
  description: r.description,
  disabledAt: asDateOrNull(r.disabled_at),
  disabledReason: r.disabled_reason,
  consecutiveFailures: r.consecutive_failures,
  failingSince: asDateOrNull(r.failing_since),
  lastSuccessAt: asDateOrNull(r.last_success_at),
  previousSecretExpiresAt: asDateOrNull(r.previous_secret_expires_at),
  createdAt: asDate(r.created_at),
})

export async function listEndpoints(sql: Pool, memberId: number): Promise<Endpoint[]> {
  const rows = await sql.unsafe<Row[]>(`select ${COLUMNS} from webhook_endpoints where member_id = $1 order by id`, [
    memberId,
  ])
  return rows.map(toEndpoint)
}

export async function getEndpoint(sql: Pool, memberId: number, id: number): Promise<Endpoint | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null
  const [row] = await sql.unsafe<Row[]>(`select ${COLUMNS} from webhook_endpoints where member_id = $1 and id = $2`, [
    memberId,
    id,
  ])
  return row ? toEndpoint(row) : null
}

/**
 * A new endpoint with a fresh secret, sealed at rest; the secret (`whsec_…`) is returned
 * to be shown once and is not kept anywhere else in clear.
 */
export async function createEndpoint(
  sql: Pool,
  keyring: Keyring,
  input: { memberId: number; url: string; events: WebhookEventType[]; description?: string },
): Promise<{ id: number; secret: string }> {
  const secret = newSecret()
  const { kekId, sealed } = sealSecret(keyring, input.memberId, secret)
  return sql.begin(async (tx) => {
    // Serialises a member's creations, so two at once cannot pass the limit together.
    await tx`select id from members where id = ${input.memberId} for update`
    const [{ n } = { n: 0 }] = await tx<{ n: number }[]>`
      select count(*)::int as n from webhook_endpoints where member_id = ${input.memberId}`
    if (n >= MAX_ENDPOINTS_PER_MEMBER) {
      throw new EndpointError(`An account holds at most ${MAX_ENDPOINTS_PER_MEMBER} endpoints; delete one first.`)
    }
    const [row] = await tx<{ id: number }[]>`
      insert into webhook_endpoints (member_id, url, events, description, secret_sealed, kek_id)
      values (${input.memberId}, ${input.url}, ${input.events}, ${(input.description ?? '').slice(0, 200)}, ${sealed}, ${kekId})
      returning id::int as id`
    return { id: Number(row!.id), secret: formatSecret(secret) }
  })
}

/** Changes the URL and event choice; false when the member has no such endpoint. */
export async function updateEndpoint(
  sql: Pool,
  input: { memberId: number; id: number; url: string; events: WebhookEventType[]; description?: string },
): Promise<boolean> {
  const rows = await sql`
    update webhook_endpoints
    set url = ${input.url}, events = ${input.events}, description = ${(input.description ?? '').slice(0, 200)},
        updated_at = now()
    where id = ${input.id} and member_id = ${input.memberId}
    returning id`
  return rows.length > 0
}

/** Deletes the endpoint and its deliveries (events stay for other endpoints); false when not the member's. */
export async function deleteEndpoint(sql: Pool, memberId: number, id: number): Promise<boolean> {
  const rows = await sql`delete from webhook_endpoints where id = ${id} and member_id = ${memberId} returning id`
  return rows.length > 0
}

/**
 * A new secret; the old one keeps signing beside it for `graceMs` (receivers accept either
 * while they are updated). Returns the new secret to show once, or null when not the member's.
 */
export async function rotateSecret(
  sql: Pool,
  keyring: Keyring,
  input: { memberId: number; id: number; graceMs: number },
): Promise<string | null> {
  const secret = newSecret()
  const { kekId, sealed } = sealSecret(keyring, input.memberId, secret)
  const rows = await sql`
    update webhook_endpoints
    set previous_secret_sealed = secret_sealed, previous_kek_id = kek_id,
        previous_secret_expires_at = now() + make_interval(secs => ${input.graceMs / 1000}),
        secret_sealed = ${sealed}, kek_id = ${kekId}, updated_at = now()
    where id = ${input.id} and member_id = ${input.memberId}
    returning id`
  return rows.length ? formatSecret(secret) : null
}

/**
 * Enables a disabled endpoint again with a clean run; deliveries failed by the disabling are
 * not resent (they may be long stale). False when not the member's.
 */
export async function enableEndpoint(sql: Pool, memberId: number, id: number): Promise<boolean> {
  const rows = await sql`
    update webhook_endpoints
    set disabled_at = null, disabled_reason = null, consecutive_failures = 0, failing_since = null, updated_at = now()
    where id = ${id} and member_id = ${memberId}
    returning id`
  return rows.length > 0
}

export type DeliveryView = {
  eventId: string
  type: string
  state: 'pending' | 'delivered' | 'failed'
  attempts: number
  nextAttemptAt: Date
  lastStatus: number | null
  lastError: string | null
  lastAttemptAt: Date | null
  deliveredAt: Date | null
  createdAt: Date
}

/** The endpoint's latest deliveries, newest first (the endpoint must be the member's: checked by the caller). */
export async function recentDeliveries(sql: Pool, endpointId: number, limit = 50): Promise<DeliveryView[]> {
  const rows = await sql<
    {
      event_id: string
      type: string
      state: DeliveryView['state']
      attempts: number
      next_attempt_at: Date
      last_status: number | null
      last_error: string | null
      last_attempt_at: Date | null
      delivered_at: Date | null
      created_at: Date
    }[]
  >`
    select d.event_id, e.type, d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error,
           d.last_attempt_at, d.delivered_at, d.created_at
    from webhook_deliveries d join webhook_events e on e.id = d.event_id
    where d.endpoint_id = ${endpointId}
    order by d.created_at desc, d.event_id desc
    limit ${limit}`
  return rows.map((r) => ({
    eventId: r.event_id,
    type: r.type,
    state: r.state,
    attempts: r.attempts,
    nextAttemptAt: asDate(r.next_attempt_at),
    lastStatus: r.last_status,
    lastError: r.last_error,
    lastAttemptAt: asDateOrNull(r.last_attempt_at),
    deliveredAt: asDateOrNull(r.delivered_at),
    createdAt: asDate(r.created_at),
  }))
}
