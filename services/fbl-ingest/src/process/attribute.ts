import type { Db } from '@atmos/db'
import type { AttributionHint } from '@atmos/mail-feedback'
import { sql } from 'drizzle-orm'

export type Attribution = {
  memberId: number
  did: string
  /**
   * The member's domain the mail was sent as, when known: the spooled message's (a signed
   * token), or the domain a DKIM d= claim matched. Its row may since have been removed.
   */
  domainId: number | null
  domain: string | null
  /** The spooled message and its one recipient, when a signed token named them. */
  messageId: string | null
  spoolRecipient: string | null
  /** Which hint decided: reference, verp, member-did, feedback-id, dkim-domain. */
  via: AttributionHint['kind']
  /** True when an HMAC-checked token decided. */
  verified: boolean
  /** Unsigned claims that named another member than the signed token did. */
  conflicts: string[]
}

export type Unattributed = { reason: string }

/**
 * Maps the classifier's hints to a member (and message). The issue's order ranks the
 * unsigned claims (X-Atmos-Member-Did, then Feedback-ID, then the DKIM d=), but a signed
 * token (VERP or X-Atmos-Ref) wins over all of them when it resolves: its HMAC proves we
 * wrote it for that very message, while the headers of a "returned" message are whatever
 * the report's sender typed, and trusting them over the token would let anyone file
 * complaints against a member of their choosing (suspension) or suppress its recipients.
 * The unsigned claims still attribute a report that carries no token, since some
 * providers strip or rewrite headers; a disagreement is kept in the event's details.
 */
export async function attribute(db: Db, hints: AttributionHint[]): Promise<Attribution | Unattributed> {
  const claims: Claim[] = []
  for (const hint of hints) {
    if (hint.kind === 'member-did') {
      const m = await memberBy(db, sql`did = ${hint.did}`)
      if (m) claims.push({ ...m, via: hint.kind, label: `X-Atmos-Member-Did ${hint.did}` })
    } else if (hint.kind === 'feedback-id') {
      const m = await memberBy(db, sql`id = ${hint.memberId}`)
      if (m) claims.push({ ...m, via: hint.kind, label: `Feedback-ID m${hint.memberId}` })
    } else if (hint.kind === 'dkim-domain') {
      const m = await memberByDomain(db, hint.domain)
      if (m) claims.push({ ...m, via: hint.kind, label: `DKIM d=${hint.domain}` })
    }
  }
  for (const hint of hints) {
    if (hint.kind !== 'verp' && hint.kind !== 'reference') continue
    // Through the message's own member and domain: a domain given up or moved since (its
    // row removed) still answers for the mail it sent.
    const rows = await db.execute<{
      member_id: string | null
      did: string | null
      domain_id: string | null
      domain: string | null
      address: string | null
    }>(sql`
      select m.member_id, mb.did, m.domain_id, d.domain,
             (select r.address from message_recipients r where r.message_id = m.id order by r.id limit 1) as address
      from messages m left join members mb on mb.id = m.member_id left join domains d on d.id = m.domain_id
      where m.id = ${hint.messageId}`)
    const row = rows[0]
    if (!row) continue
    if (row.member_id === null || row.did === null) {
      // Our own forward to the operator inbox came back: nobody's reputation, and never
      // forwarded again (that could loop). Kept in quarantine for the operator to see.
      return {
        reason: `the pool's own mail bounced: a forward to ${row.address ?? 'the operator inbox'} (check fblIngest.operatorInbox)`,
      }
    }
    const memberId = Number(row.member_id)
    return {
      memberId,
      did: row.did,
      domainId: row.domain_id === null ? null : Number(row.domain_id),
      domain: row.domain,
      messageId: hint.messageId,
      spoolRecipient: row.address ? row.address.toLowerCase() : null,
      via: hint.kind,
      verified: true,
      conflicts: claims.filter((c) => c.memberId !== memberId).map((c) => `${c.label} names ${c.did}`),
    }
  }
  const first = claims[0]
  if (first) {
    return {
      memberId: first.memberId,
      did: first.did,
      domainId: first.domainId,
      domain: first.domain,
      messageId: null,
      spoolRecipient: null,
      via: first.via,
      verified: false,
      conflicts: claims.filter((c) => c.memberId !== first.memberId).map((c) => `${c.label} names ${c.did}`),
    }
  }
  if (!hints.length) {
    return { reason: 'no attribution: no VERP address, X-Atmos-Ref, member DID, Feedback-ID or member DKIM domain' }
  }
  return {
    reason: `no attribution: ${hints.map(describeHint).join(', ')} matched no member or spooled message`,
  }
}

type Member = { memberId: number; did: string; domainId: number | null; domain: string | null }
type Claim = Member & { via: AttributionHint['kind']; label: string }

async function memberBy(db: Db, where: ReturnType<typeof sql>): Promise<Member | null> {
  const rows = await db.execute<{ id: string; did: string }>(sql`select id, did from members where ${where}`)
  return rows[0] ? { memberId: Number(rows[0].id), did: rows[0].did, domainId: null, domain: null } : null
}

/**
 * The member whose domain signed as `d`: a member signs as its domain, and a subdomain of it
 * is the member's too. The domain's live holder first (the most specific domain of those);
 * a domain nobody holds any more still names the member that held it last.
 */
async function memberByDomain(db: Db, d: string): Promise<Member | null> {
  // d= and each domain above it: a.b.example, b.example, example.
  const labels = d.toLowerCase().split('.')
  const names = labels.map((_, i) => labels.slice(i).join('.'))
  const rows = await db.execute<{ member_id: string; did: string; id: string; domain: string }>(sql`
    select d.member_id, m.did, d.id, d.domain
    from domains d join members m on m.id = d.member_id
    where d.domain in (${sql.join(
      names.map((n) => sql`${n}`),
      sql`, `,
    )})
    order by d.removed_at is null desc, length(d.domain) desc, d.removed_at desc, d.id desc
    limit 1`)
  const r = rows[0]
  return r ? { memberId: Number(r.member_id), did: r.did, domainId: Number(r.id), domain: r.domain } : null
}

function describeHint(h: AttributionHint): string {
  switch (h.kind) {
    case 'member-did':
      return `member DID ${h.did}`
    case 'feedback-id':
      return `Feedback-ID member ${h.memberId}`
    case 'dkim-domain':
      return `DKIM d=${h.domain}`
    case 'reference':
      return `X-Atmos-Ref message ${h.messageId}`
    case 'verp':
      return `VERP message ${h.messageId}`
  }
}
