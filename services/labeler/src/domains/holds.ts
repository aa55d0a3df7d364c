import {
  attestations,
  auditLog,
  dkimKeys,
  domains,
  members,
  smtpCredentials,
  type Tx,
  verificationStatus,
} from '@atmos/db'
import type { AttestationVerification } from '@atmos/verify'
import { and, eq, inArray, isNull, ne, type SQL, sql } from 'drizzle-orm'
import type { VerifyRequest } from '../verify/requests.ts'

// Who holds a domain (verification_status.holds) is decided only here and in the verify
// worker, always under the domain's lock. A domain belongs to one DID at a time.

/**
 * Takes the transaction-scoped locks of these domains, in one fixed order (so two
 * transactions never wait on each other crosswise). Every change of who holds a domain
 * takes its lock before it touches the attestation rows of that domain.
 */
export async function lockDomains(tx: Tx, names: Array<string | null | undefined>): Promise<void> {
  const unique = [...new Set(names.filter((d): d is string => !!d))]
  if (!unique.length) return
  const list = sql.join(
    unique.map((d) => sql`${d}`),
    sql`, `,
  )
  await tx.execute(
    sql`select pg_advisory_xact_lock(k) from (select distinct hashtextextended('atmos-domain:' || d, 0) as k from unnest(array[${list}]::text[]) as d order by k) as keys`,
  )
}

/** The DID other than `did` that holds `domain` now, if any. */
export async function holderOf(tx: Pick<Tx, 'select'>, domain: string, did: string): Promise<string | undefined> {
  const [row] = await tx
    .select({ did: verificationStatus.did })
    .from(verificationStatus)
    .where(and(eq(verificationStatus.domain, domain), verificationStatus.holds, ne(verificationStatus.did, did)))
    .limit(1)
  return row?.did
}

/** Why a claim on a domain another DID holds is refused (the run's domain_control check). */
export function heldElsewhereReason(domain: string, holder: string): string {
  return `${domain} is held by ${holder}; a domain belongs to one account at a time: it can be claimed once that account's attestation for it is deleted or stops verifying`
}

/** The run recorded for a refused claim: no DNS was asked. */
export function refusedClaim(domain: string, holder: string, at: Date): AttestationVerification {
  const reason = heldElsewhereReason(domain, holder)
  return {
    outcome: 'fail',
    reason: `Refused: ${reason}.`,
    checks: [{ check: 'domain_control', outcome: 'fail', reason, warnings: [], details: { heldBy: holder } }],
    checkedAt: at.toISOString(),
  }
}

/**
 * The other DIDs' live attestations of these domains are verified again (trigger
 * `release`): the holder let go, so one of them may now hold the domain.
 */
export async function requestRelease(tx: Tx, exceptDid: string, names: string[], now: Date): Promise<VerifyRequest[]> {
  if (!names.length) return []
  const rows = await tx
    .update(attestations)
    .set({ verifyRequestedAt: now, verifyTrigger: 'release' })
    .where(
      and(
        inArray(attestations.domain, names),
        ne(attestations.did, exceptDid),
        eq(attestations.deleted, false),
        eq(attestations.state, 'valid'),
      ),
    )
    .returning({ did: attestations.did, rkey: attestations.rkey })
  return rows.map((r) => ({ did: r.did, rkey: r.rkey, trigger: 'release' as const, requestedAt: now }))
}

/**
 * The DID stops holding these domains (all of them: 'all'); the other claimants are asked
 * to verify. The caller holds the domains' locks.
 */
export async function releaseHolds(tx: Tx, did: string, names: string[] | 'all', now: Date): Promise<VerifyRequest[]> {
  if (names !== 'all' && !names.length) return []
  const which: SQL[] = [eq(verificationStatus.did, did), eq(verificationStatus.holds, true)]
  if (names !== 'all') which.push(inArray(verificationStatus.domain, names))
  const released = await tx
    .update(verificationStatus)
    .set({ holds: false })
    .where(and(...which))
    .returning({ domain: verificationStatus.domain })
  return requestRelease(
    tx,
    did,
    released.map((r) => r.domain),
    now,
  )
}

/**
 * `did` has just gained `domain`: a relay domains row of another member that still holds
 * it is removed ('moved to <did>'), its credentials scoped to it revoked, and the move
 * audited. Returns the DIDs that lost the domain, whose labels the caller recomputes.
 */
export async function moveRelayDomain(tx: Tx, did: string, domain: string, now: Date): Promise<string[]> {
  const held = await tx
    .select({ id: domains.id, memberId: domains.memberId, did: members.did })
    .from(domains)
    .innerJoin(members, eq(members.id, domains.memberId))
    .where(and(eq(domains.domain, domain), isNull(domains.removedAt), ne(members.did, did)))
    .for('update', { of: domains })
  for (const row of held) {
    await tx
      .update(domains)
      .set({ removedAt: now, removedReason: `moved to ${did}`, updatedAt: now })
      .where(eq(domains.id, row.id))
    const revoked = await tx
      .update(smtpCredentials)
      .set({ revokedAt: now })
      .where(and(eq(smtpCredentials.domainId, row.id), isNull(smtpCredentials.revokedAt)))
      .returning({ id: smtpCredentials.id })
    // Its keys sign nothing more: the new holder's enrolment issues its own.
    const retired = await tx
      .update(dkimKeys)
      .set({ status: 'retired', retiredAt: now })
      .where(and(eq(dkimKeys.domainId, row.id), ne(dkimKeys.status, 'retired')))
      .returning({ id: dkimKeys.id })
    await tx.insert(auditLog).values({
      at: now,
      actor: 'labeler',
      action: 'domain.moved',
      did: row.did,
      domain,
      memberId: row.memberId,
      detail: {
        from: row.did,
        to: did,
        domainId: row.id,
        credentialsRevoked: revoked.length,
        keysRetired: retired.length,
      },
    })
  }
  return [...new Set(held.map((r) => r.did))]
}
