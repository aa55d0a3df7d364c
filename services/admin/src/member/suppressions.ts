import { auditLog, type Db } from '@atmos/db'
import { activeSuppression, listSuppressions, removeSuppression, type SuppressionReason } from '@atmos/reputation'

/**
 * A member's suppression list as the member sees it, and the member's lifting of an entry:
 * one set of rules for the JSON member API (/api/member/suppressions) and the account page
 * (/account/suppressions). The list is the member's, over all its domains: a recipient who
 * bounced or complained is not sent the member's mail from another of its domains either. A
 * complaint entry is not the member's to lift: the person asked not to get its mail, and
 * sending again would cost the whole pool; an operator can (`fbl-ingest suppressions remove`).
 */

export type MemberSuppression = {
  address: string
  reason: SuppressionReason
  detail: string | null
  /** The domain whose mail led to the entry, when known; the entry stands for all of them. */
  domain: string | null
  since: Date
  expiresAt: Date | null
}

/** More than a page shows; the list of a member with a healthy list is a handful. */
export const SUPPRESSIONS_SHOWN = 10_000

/** The member's standing entries (not lifted, not expired), oldest first. */
export async function memberSuppressions(db: Db, memberId: number): Promise<MemberSuppression[]> {
  const items = await listSuppressions(db, { memberId, limit: SUPPRESSIONS_SHOWN })
  return items.map((s) => ({
    address: s.address,
    reason: s.reason,
    detail: s.detail,
    domain: s.domain,
    since: s.createdAt,
    expiresAt: s.expiresAt,
  }))
}

/** Only a complaint waits for an operator; bounces, unsubscribes and manual entries are the member's to lift. */
export function memberMayLift(reason: SuppressionReason): boolean {
  return reason !== 'complaint'
}

export type LiftResult =
  | { ok: true; address: string }
  | { ok: false; status: 400 | 403 | 404; error: 'InvalidRequest' | 'Forbidden' | 'NotFound'; message: string }

/** At most 64 octets before the @, 255 after, no spaces: what any address on a list looks like. */
const ADDRESS = /^[^\s@]{1,64}@[^\s@]{1,255}$/

/**
 * Lifts the member's standing entry for `input` (an address as typed), refusing a complaint
 * entry; the removal and its audit row (actor, ip and how the member came) commit together.
 */
export async function liftSuppression(
  db: Db,
  input: {
    member: { id: number; did: string }
    address: string
    actor: string
    detail: Record<string, unknown>
  },
): Promise<LiftResult> {
  const { member } = input
  const address = input.address.trim().toLowerCase()
  if (address.length > 320 || !ADDRESS.test(address)) {
    return { ok: false, status: 400, error: 'InvalidRequest', message: 'address: an email address' }
  }
  const entry = await activeSuppression(db, member.id, address)
  if (!entry) {
    return {
      ok: false,
      status: 404,
      error: 'NotFound',
      message: `${address} is not on the suppression list of ${member.did}`,
    }
  }
  if (!memberMayLift(entry.reason)) {
    const whose = entry.domain ? `${entry.domain}'s` : `${member.did}'s`
    return {
      ok: false,
      status: 403,
      error: 'Forbidden',
      message: `${address} complained about ${whose} mail; only a pool operator can lift that entry`,
    }
  }
  const lifted = await db.transaction(async (tx) => {
    const removed = await removeSuppression(tx, { memberId: member.id, address, by: `member:${member.did}` })
    if (!removed) return false
    await tx.insert(auditLog).values({
      actor: input.actor,
      action: 'suppression.lifted',
      did: member.did,
      domain: entry.domain,
      memberId: member.id,
      detail: { ...input.detail, address, reason: entry.reason },
    })
    return true
  })
  // Lifted by another request between the look and the update: there is nothing left to lift.
  if (!lifted) {
    return {
      ok: false,
      status: 404,
      error: 'NotFound',
      message: `${address} is not on the suppression list of ${member.did}`,
    }
  }
  return { ok: true, address }
}
