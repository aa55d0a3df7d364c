import type { Db } from '@atmos/db'
import { computeReputation, type Reputation } from '@atmos/reputation'
import { sql } from 'drizzle-orm'
import { type DomainView, memberDomains } from '../domains.ts'

export type MemberView = {
  did: string
  handle: string | null
  status: string
  statusReason: string | null
  enrolledAt: string
  /** The live domains, each with its status and warming. */
  domains: DomainView[]
  /** Domains the member gave up or that moved to another account: their rows stay, with when and why. */
  removedDomains: DomainView[]
  reputation: Pick<Reputation, 'level' | 'reasons'>
}

/** A member as the operator sees it; null when there is no member with that DID. */
export async function memberView(db: Db, did: string): Promise<MemberView | null> {
  const rows = await db.execute<{
    id: string
    did: string
    handle: string | null
    status: string
    status_reason: string | null
    enrolled_at: string
  }>(sql`
    select id::text, did, handle, status, status_reason,
           to_char(enrolled_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as enrolled_at
    from members where did = ${did}`)
  const m = rows[0]
  if (!m) return null
  const id = Number(m.id)
  const all = await memberDomains(db, id, { removed: true })
  const reputation = await computeReputation(db, id)
  return {
    did: m.did,
    handle: m.handle,
    status: m.status,
    statusReason: m.status_reason,
    enrolledAt: m.enrolled_at,
    domains: all.filter((d) => !d.removedAt),
    removedDomains: all.filter((d) => d.removedAt),
    reputation: { level: reputation.level, reasons: reputation.reasons },
  }
}
