import type { Pool } from '@atmos/db'

// Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): the first answer to a key is
// recorded in the transaction that spools the message, so "answered" and "spooled" are one
// fact. A retry finds the row and gets the same answer; a concurrent duplicate blocks on the
// first one's uncommitted row (the primary key) and then finds it, so a message is never
// spooled twice. Refusals are not recorded: nothing was spooled, so a retry cannot send twice,
// and a request refused for the cap or an outage may succeed later.

/** 1–255 printable ASCII characters. */
const KEY = /^[\x20-\x7e]{1,255}$/

export function validIdempotencyKey(key: string): boolean {
  return KEY.test(key)
}

export type StoredAnswer = { requestHash: string; status: number; response: unknown }

/** Thrown inside the spooling transaction when another request with the key answered first. */
export class AlreadyAnswered extends Error {
  override name = 'AlreadyAnswered'
}

export type IdempotencyClaim = { apiKeyId: number; key: string; requestHash: string; ttlMs: number }

/** The first answer recorded for the key within the replay window, or null. */
export async function findAnswer(
  sql: Pool,
  apiKeyId: number,
  key: string,
  ttlMs: number,
): Promise<StoredAnswer | null> {
  // Read as text and parsed here: the pool drizzle makes leaves jsonb unparsed.
  const [row] = await sql<Array<Omit<StoredAnswer, 'response'> & { response: string }>>`
    select request_hash as "requestHash", status, response::text as response from send_api_idempotency
    where api_key_id = ${apiKeyId} and idempotency_key = ${key}
      and created_at > now() - make_interval(secs => ${ttlMs / 1000})`
  return row ? { ...row, response: JSON.parse(row.response) } : null
}

/**
 * Records the answer for the key and runs `effect` (the spool) in the same transaction; throws
 * AlreadyAnswered (and rolls back) when the key was answered first by another request. The
 * key's expired rows go first, so an old key may be used again.
 */
export async function recordAnswer<T>(
  sql: Pool,
  claim: IdempotencyClaim,
  answer: { status: number; response: unknown },
  effect: (tx: Pool) => Promise<T>,
): Promise<T> {
  return sql.begin(async (t) => {
    const tx = t as unknown as Pool
    await tx`
      delete from send_api_idempotency
      where api_key_id = ${claim.apiKeyId} and created_at <= now() - make_interval(secs => ${claim.ttlMs / 1000})`
    const inserted = await tx`
      insert into send_api_idempotency (api_key_id, idempotency_key, request_hash, status, response)
      values (${claim.apiKeyId}, ${claim.key}, ${claim.requestHash}, ${answer.status}, ${JSON.stringify(answer.response)}::jsonb)
      on conflict do nothing
      returning 1`
    if (!inserted.length) throw new AlreadyAnswered()
    return effect(tx)
  }) as Promise<T>
}

/** Deletes every answer past the replay window; the number deleted. */
export async function sweepAnswers(sql: Pool, ttlMs: number): Promise<number> {
  const rows = await sql`
    delete from send_api_idempotency where created_at <= now() - make_interval(secs => ${ttlMs / 1000})
    returning 1`
  return rows.length
}
