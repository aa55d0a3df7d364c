import { auditLog, type Db } from '@atmos/db'
import { activeSuppression, removeSuppression } from '@atmos/reputation'

/**
 * An operator lifts a standing suppression of a member, complaints included (the member
 * cannot lift those: member/suppressions.ts). The same removal as `fbl-ingest suppressions
 * remove`, with the reason and the operator in one transaction with an audit row.
 */
export async function operatorLiftSuppression(
  db: Db,
  input: {
    member: { id: number; did: string }
    address: string
    reason: string
    actor: string
    detail: Record<string, unknown>
  },
): Promise<{ ok: true; reason: string } | { ok: false; message: string }> {
  const address = input.address.trim().toLowerCase()
  const entry = await activeSuppression(db, input.member.id, address)
  if (!entry)
    return { ok: false, message: `${address.slice(0, 320)} is not on the suppression list of ${input.member.did}` }
  const lifted = await db.transaction(async (tx) => {
    const removed = await removeSuppression(tx, { memberId: input.member.id, address, by: input.actor })
    if (!removed) return false
    await tx.insert(auditLog).values({
      actor: input.actor,
      action: 'suppression.lifted',
      did: input.member.did,
      domain: entry.domain,
      memberId: input.member.id,
      detail: { ...input.detail, address, suppressed: entry.reason, reason: input.reason },
    })
    return true
  })
  if (!lifted)
    return { ok: false, message: `${address.slice(0, 320)} is not on the suppression list of ${input.member.did}` }
  return { ok: true, reason: entry.reason }
}
