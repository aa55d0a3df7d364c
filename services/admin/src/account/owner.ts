import type { Db } from '@atmos/db'
import { checkDomain } from '@atmos/enrolment'
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

/** A live domain of the member, as its own pages need it. */
export type OwnedLiveDomain = { id: number; memberId: number; domain: string; status: string; forwardTo: string | null }

/**
 * The live domain (not removed) that a URL names, when it is one of the signed-in DID's; null
 * for anything else (not a domain name, another member's, removed, no one's), so that a page
 * answers all of them with the same 404 and never hints that a domain exists.
 */
export async function ownedLiveDomain(db: Db, did: string, param: string): Promise<OwnedLiveDomain | null> {
  let domain: string
  try {
    domain = checkDomain(param.slice(0, 300))
  } catch {
    return null
  }
  const [d] = await db.execute<{
    id: number
    member_id: number
    domain: string
    status: string
    forward_to: string | null
  }>(sql`
    select d.id::int as id, d.member_id::int as member_id, d.domain, d.status, d.forward_to
    from domains d join members m on m.id = d.member_id
    where m.did = ${did} and d.domain = ${domain} and d.removed_at is null`)
  return d
    ? { id: Number(d.id), memberId: Number(d.member_id), domain: d.domain, status: d.status, forwardTo: d.forward_to }
    : null
}
