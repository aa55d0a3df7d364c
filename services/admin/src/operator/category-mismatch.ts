import type { Db } from '@atmos/db'
import { sql } from 'drizzle-orm'
import { z } from 'zod'

// Transactional mail carries no unsubscribe, so a member could call its newsletter a
// `password-reset` and send it without one. Real transactional mail differs per recipient
// (a link, a code, a name); one body to many distinct recipients under a transactional
// category is bulk mail. The relay keeps the body's hash for transactional categories only
// (messages.body_hash), and this lists, over a window, each member, category and body that
// reached at least `min` distinct recipients: for the operator to look at, not an automatic
// verdict (a status mail to a whole team is legitimately identical).

export const categoryMismatchQuery = z.object({
  hours: z.coerce.number().int().min(1).max(720).default(24),
  /** Distinct recipients of one body that make a mismatch. */
  min: z.coerce.number().int().min(2).max(100_000).default(20),
  limit: z.coerce.number().int().min(1).max(200).default(50),
})

export type CategoryMismatchQuery = z.infer<typeof categoryMismatchQuery>

export type CategoryMismatch = {
  member: string
  domain: string | null
  category: string
  recipients: number
  firstAt: string
  lastAt: string
}

export async function listCategoryMismatches(db: Db, q: CategoryMismatchQuery): Promise<CategoryMismatch[]> {
  // Through messages_body_hash_idx (received_at where body_hash is not null): recent
  // transactional mail only, never the whole spool.
  const rows = await db.execute<{
    did: string
    domain: string | null
    category: string
    recipients: string
    first_at: string
    last_at: string
  }>(sql`
    select mb.did, d.domain, m.category, count(distinct r.address) as recipients,
           min(m.received_at)::text as first_at, max(m.received_at)::text as last_at
    from messages m
    join members mb on mb.id = m.member_id
    left join domains d on d.id = m.domain_id
    join message_recipients r on r.message_id = m.id
    where m.body_hash is not null and m.received_at >= now() - make_interval(hours => ${q.hours})
    group by mb.did, d.domain, m.category, m.body_hash
    having count(distinct r.address) >= ${q.min}
    order by count(distinct r.address) desc, mb.did
    limit ${q.limit}`)
  return rows.map((r) => ({
    member: r.did,
    domain: r.domain,
    category: r.category,
    recipients: Number(r.recipients),
    firstAt: new Date(r.first_at).toISOString(),
    lastAt: new Date(r.last_at).toISOString(),
  }))
}
