import type { Db } from '@atmos/db'
import { sql } from 'drizzle-orm'

/** One of a member's domains rows: live, or given up or moved away (its old mail stays the member's). */
export type OwnedDomain = { id: number; domain: string; live: boolean }

/**
 * Every domains row of the member, oldest first. The account functions map ids from the
 * database to names only through this list, and check a domain a request names against it,
 * so nothing of another member's is ever named or counted.
 */
export async function memberDomainIds(db: Db, memberId: number): Promise<OwnedDomain[]> {
  const rows = await db.execute<{ id: string; domain: string; live: boolean }>(sql`
    select id::text, domain, removed_at is null as live from domains where member_id = ${memberId} order by id`)
  return rows.map((r) => ({ id: Number(r.id), domain: r.domain, live: r.live }))
}
