import { members } from '@atmos/db'
import { eq } from 'drizzle-orm'
import type { Executor } from './executor.ts'
import { computeReputation, type Reputation } from './reputation.ts'
import { type StatusChangeResult, type StatusQueue, setMemberStatus } from './status.ts'
import type { Thresholds } from './thresholds.ts'

export type Enforcement = {
  reputation: Reputation
  /** Set when this call suspended the member. */
  suspension?: StatusChangeResult
}

/**
 * Recomputes a member's reputation and suspends an active member whose counted rates
 * reached a suspend threshold, with the figures as the recorded reason. A warning
 * changes nothing here: it is for dashboards and the member.
 */
export async function enforceReputation(
  db: Executor,
  queue: StatusQueue,
  memberId: number,
  opts: { thresholds?: Partial<Thresholds>; actor?: string; now?: Date } = {},
): Promise<Enforcement> {
  const reputation = await computeReputation(db, memberId, opts)
  if (reputation.level !== 'suspend') return { reputation }
  const [m] = await db
    .select({ did: members.did, status: members.status })
    .from(members)
    .where(eq(members.id, memberId))
  if (m?.status !== 'active') return { reputation }
  const reason = reputation.reasons.filter((r) => r.includes('suspend threshold')).join('; ')
  const suspension = await setMemberStatus(db, queue, m.did, 'suspended', reason, opts.actor ?? 'fbl-ingest')
  return { reputation, suspension }
}
