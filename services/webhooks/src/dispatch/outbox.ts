import type { Pool } from '@atmos/db'
import { asDate } from '@atmos/webhook-events'

// The dispatcher's statements over the outbox. A delivery is claimed with FOR UPDATE SKIP
// LOCKED (replicas share the work) and leased: `attempts` goes up by one (the claim's fencing
// token) and `next_attempt_at` moves to the end of the lease, so a dispatcher killed mid-POST
// leaves a delivery that is due again once the lease lapses, never one that is lost.

export type ClaimedDelivery = {
  eventId: string
  endpointId: number
  attempt: number
  memberId: number
  type: string
  payload: unknown
  createdAt: Date
  url: string
  secretSealed: Buffer
  kekId: string
  /** The previous secret while its rotation grace lasts (by the database's clock); null otherwise. */
  previousSecretSealed: Buffer | null
  previousKekId: string | null
}

/**
 * Claims up to `limit` due deliveries, at most `perEndpoint` of any one endpoint and none of
 * the endpoints in `skip` (those this process already has `perEndpoint` POSTs in flight to):
 * an endpoint that times out cannot take every slot while the others wait.
 */
export async function claimDue(
  sql: Pool,
  limit: number,
  leaseMs: number,
  opts: { perEndpoint: number; skip: number[] } = { perEndpoint: limit, skip: [] },
): Promise<ClaimedDelivery[]> {
  const rows = await sql<
    Array<{
      event_id: string
      endpoint_id: string
      attempts: number
      member_id: string
      type: string
      payload: unknown
      created_at: Date
      url: string
      secret_sealed: Buffer
      kek_id: string
      previous_secret_sealed: Buffer | null
      previous_kek_id: string | null
      previous_live: boolean
    }>
  >`
    with due as materialized (
      select d.event_id, d.endpoint_id from webhook_deliveries d
      where (d.event_id, d.endpoint_id) in (
        select x.event_id, x.endpoint_id from (
          select d2.event_id, d2.endpoint_id, d2.next_attempt_at,
                 row_number() over (partition by d2.endpoint_id order by d2.next_attempt_at) as nth
          from webhook_deliveries d2
          join webhook_endpoints e on e.id = d2.endpoint_id and e.disabled_at is null
          where d2.state = 'pending' and d2.next_attempt_at <= now()
            and d2.endpoint_id <> all(${opts.skip}::bigint[])
          order by d2.next_attempt_at
          limit ${limit * 4}) x
        where x.nth <= ${opts.perEndpoint})
      order by d.next_attempt_at
      limit ${limit}
      for update of d skip locked
    ), claimed as (
      update webhook_deliveries d
      set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => ${leaseMs / 1000})
      from due where d.event_id = due.event_id and d.endpoint_id = due.endpoint_id
      returning d.event_id, d.endpoint_id, d.attempts
    )
    select c.event_id, c.endpoint_id::text, c.attempts, v.member_id::text, v.type, v.payload, v.created_at,
           e.url, e.secret_sealed, e.kek_id, e.previous_secret_sealed, e.previous_kek_id,
           coalesce(e.previous_secret_expires_at > now(), false) as previous_live
    from claimed c
    join webhook_events v on v.id = c.event_id
    join webhook_endpoints e on e.id = c.endpoint_id`
  return rows.map((r) => ({
    eventId: r.event_id,
    endpointId: Number(r.endpoint_id),
    attempt: r.attempts,
    memberId: Number(r.member_id),
    type: r.type,
    payload: r.payload,
    createdAt: asDate(r.created_at),
    url: r.url,
    secretSealed: r.secret_sealed,
    kekId: r.kek_id,
    previousSecretSealed: r.previous_live ? r.previous_secret_sealed : null,
    previousKekId: r.previous_live ? r.previous_kek_id : null,
  }))
}

/** A 2xx: the delivery is done, and the endpoint's run of failures ends. */
export async function recordSuccess(sql: Pool, d: ClaimedDelivery, status: number): Promise<boolean> {
  return sql.begin(async (tx) => {
    const done = await tx`
      update webhook_deliveries
      set state = 'delivered', delivered_at = now(), last_attempt_at = now(), last_status = ${status}, last_error = null
      where event_id = ${d.eventId} and endpoint_id = ${d.endpointId} and attempts = ${d.attempt} and state = 'pending'
      returning event_id`
    if (!done.length) return false
    await tx`
      update webhook_endpoints
      set consecutive_failures = 0, failing_since = null, last_success_at = now()
      where id = ${d.endpointId}`
    return true
  })
}

export type FailureOutcome = {
  applied: boolean
  /** The delivery has no attempt left. */
  exhausted: boolean
  /** The endpoint was disabled by this failure (the run of failures reached the rule). */
  disabled: string | null
}

/**
 * A failed attempt: due again after `retryInMs`, or (null) failed for good, which counts
 * towards disabling the endpoint: `disableAfterFailures` deliveries in a row exhausted, the
 * first failure of the run at least `disableAfterMs` ago. Disabling fails the endpoint's
 * other pending deliveries too (they would only fail the same way; the account shows them).
 */
export async function recordFailure(
  sql: Pool,
  d: ClaimedDelivery,
  result: { status: number | null; error: string },
  retryInMs: number | null,
  rule: { disableAfterFailures: number; disableAfterMs: number },
): Promise<FailureOutcome> {
  return sql.begin(async (tx) => {
    const error = result.error.slice(0, 500)
    const retrySecs = retryInMs === null ? null : retryInMs / 1000
    const updated = await tx`
      update webhook_deliveries
      set state = ${retryInMs === null ? 'failed' : 'pending'},
          next_attempt_at = case when ${retrySecs}::float8 is null then next_attempt_at
                                 else now() + make_interval(secs => ${retrySecs}::float8) end,
          last_attempt_at = now(), last_status = ${result.status}, last_error = ${error}
      where event_id = ${d.eventId} and endpoint_id = ${d.endpointId} and attempts = ${d.attempt} and state = 'pending'
      returning event_id`
    if (!updated.length) return { applied: false, exhausted: false, disabled: null }
    const [ep] = await tx<{ failures: number; long: boolean; disabled: boolean }[]>`
      update webhook_endpoints
      set consecutive_failures = consecutive_failures + ${retryInMs === null ? 1 : 0},
          failing_since = coalesce(failing_since, now())
      where id = ${d.endpointId}
      returning consecutive_failures as failures,
                failing_since <= now() - make_interval(secs => ${rule.disableAfterMs / 1000}) as long,
                disabled_at is not null as disabled`
    if (retryInMs !== null || !ep || ep.disabled)
      return { applied: true, exhausted: retryInMs === null, disabled: null }
    if (ep.failures < rule.disableAfterFailures || !ep.long) return { applied: true, exhausted: true, disabled: null }
    const reason =
      `disabled after ${ep.failures} events in a row failed every attempt ` + `(last: ${error.slice(0, 200)})`
    await tx`
      update webhook_endpoints set disabled_at = now(), disabled_reason = ${reason}, updated_at = now()
      where id = ${d.endpointId} and disabled_at is null`
    await tx`
      update webhook_deliveries set state = 'failed', last_error = coalesce(last_error, 'endpoint disabled')
      where endpoint_id = ${d.endpointId} and state = 'pending'`
    await tx`
      insert into audit_log (actor, action, member_id, detail)
      values ('webhooks', 'webhook.disabled', ${d.memberId}, ${JSON.stringify({ endpointId: d.endpointId, reason })}::jsonb)`
    return { applied: true, exhausted: true, disabled: reason }
  })
}

/**
 * Deletes up to `limit` events older than `retentionMs` that have no pending delivery (their
 * deliveries go with them); returns how many. Replicas share the work (skip locked).
 */
export async function purgeOld(sql: Pool, retentionMs: number, limit: number): Promise<number> {
  const rows = await sql`
    with old as materialized (
      select v.id from webhook_events v
      where v.created_at < now() - make_interval(secs => ${retentionMs / 1000})
        and not exists (select 1 from webhook_deliveries d where d.event_id = v.id and d.state = 'pending')
      order by v.created_at
      limit ${limit}
      for update skip locked)
    delete from webhook_events v using old where v.id = old.id
    returning v.id`
  return rows.length
}

/** A delivery that cannot be sent at all (its secret does not open): failed at once, with why. */
export async function recordUnsendable(sql: Pool, d: ClaimedDelivery, error: string): Promise<void> {
  await sql`
    update webhook_deliveries set state = 'failed', last_attempt_at = now(), last_error = ${error.slice(0, 500)}
    where event_id = ${d.eventId} and endpoint_id = ${d.endpointId} and attempts = ${d.attempt} and state = 'pending'`
}
