import type { Db } from '@atmos/db'
import { withTimeout } from '@atmos/runtime'
import { sql } from 'drizzle-orm'

// What port 25 needs to know about a domain a member enrolled, asked at RCPT: whether mail to
// it is forwarded, and if not why. Asked of Postgres with a bound on time, and remembered
// briefly (and in a bounded map), so a sender that names a thousand recipients, or a
// thousand unknown domains, costs a thousand cache look-ups and few queries.

export type MemberDomain = {
  domainId: number
  memberId: number
  domain: string
  status: 'pending' | 'active' | 'suspended'
  forwardTo: string | null
  /** The forward-to address is on the member's suppression list now. */
  forwardToSuppressed: boolean
  /** Forwards made for the domain in the last hour (forwarded or bounced; refused ones do not count). */
  forwardsLastHour: number
}

type Entry = { at: number; value: MemberDomain | null }

export class MemberDomains {
  private readonly db: Db
  private readonly ttlMs: number
  private readonly timeoutMs: number
  private readonly maxEntries: number
  private readonly cache = new Map<string, Entry>()

  constructor(db: Db, opts: { ttlMs: number; timeoutMs?: number; maxEntries?: number }) {
    this.db = db
    this.ttlMs = opts.ttlMs
    this.timeoutMs = opts.timeoutMs ?? 2000
    this.maxEntries = opts.maxEntries ?? 10_000
  }

  /** The live (not removed) domain of that exact name, or null. Throws when Postgres does not answer in time. */
  async lookup(domain: string): Promise<MemberDomain | null> {
    const name = domain.toLowerCase()
    const hit = this.cache.get(name)
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.value
    const value = await withTimeout(readMemberDomain(this.db, name), this.timeoutMs, 'postgres')
    if (this.cache.size >= this.maxEntries) {
      // Oldest first: a Map iterates in insertion order.
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    this.cache.delete(name)
    this.cache.set(name, { at: Date.now(), value })
    return value
  }
}

export async function readMemberDomain(db: Db, domain: string): Promise<MemberDomain | null> {
  const rows = await db.execute<{
    id: string
    member_id: string
    domain: string
    status: MemberDomain['status']
    forward_to: string | null
    suppressed: boolean
    recent: number
  }>(sql`
    select d.id::text, d.member_id::text, d.domain, d.status, d.forward_to,
      (exists (select 1 from suppressions s
               where s.member_id = d.member_id and s.address = lower(d.forward_to) and s.removed_at is null
                 and (s.expires_at is null or s.expires_at > now()))
       -- The relay records a forward refused at once (550 5.1.1 in the SMTP dialogue) on its
       -- own recipient row, not as the member's suppression (a forward is the pool's mail):
       -- the latest finished forward to the address having bounced as a bad mailbox counts too.
       or coalesce((select mr.state = 'bounced' and mr.last_reply ~ '^5[0-9][0-9][ -]5[.]1[.]'
                    from inbound_forwards f join message_recipients mr on mr.message_id = f.message_id
                    where f.domain_id = d.id and f.forward_to = lower(d.forward_to)
                      and f.created_at > now() - interval '30 days' and mr.state in ('delivered', 'bounced')
                    order by f.created_at desc limit 1), false)) as suppressed,
      (select count(*)::int from inbound_forwards f
       where f.domain_id = d.id and f.state <> 'refused' and f.created_at > now() - interval '1 hour') as recent
    from domains d
    where d.domain = ${domain} and d.removed_at is null
    limit 1`)
  const r = rows[0]
  if (!r) return null
  return {
    domainId: Number(r.id),
    memberId: Number(r.member_id),
    domain: r.domain,
    status: r.status,
    forwardTo: r.forward_to ? r.forward_to.toLowerCase() : null,
    forwardToSuppressed: r.suppressed,
    forwardsLastHour: Number(r.recent),
  }
}
