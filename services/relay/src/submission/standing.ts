import type { MemberStatus, Pool } from '@atmos/db'

export type Standing = {
  status: MemberStatus
  statusReason: string | null
  /** Milliseconds since the epoch (dates are read as numbers: the drizzle-wrapped pool returns them as strings). */
  activatedAt: number | null
  /** Holds a current (not negated, not expired) verified-mail-operator label. */
  verified: boolean
}

export const VERIFIED_LABEL = 'verified-mail-operator'

/**
 * Whether a member may send now, read fresh for every message: a suspension or a lost
 * label takes effect on the next MAIL FROM, also on a connection opened before it.
 * Labels are read as the labeler stores them (one row per src, uri, val in its latest
 * state; the account-level label's uri is the DID; `exp` is the signed ISO string).
 * relay-member is not required: it is what the labeler derives from this status.
 */
export async function memberStanding(sql: Pool, memberId: number, labelerDid: string): Promise<Standing | null> {
  const [row] = await sql<Standing[]>`
    select m.status, m.status_reason as "statusReason",
      (extract(epoch from m.activated_at) * 1000)::float8 as "activatedAt",
      exists (
        select 1 from labels l
        where l.uri = m.did and l.val = ${VERIFIED_LABEL} and not l.neg
          and (l.exp is null or l.exp::timestamptz > now())
          ${labelerDid ? sql`and l.src = ${labelerDid}` : sql``}
      ) as verified
    from members m where m.id = ${memberId}`
  return row ?? null
}
