import { attestations } from '@atmos/db'
import { and, eq, not, or, type SQL, sql } from 'drizzle-orm'

/**
 * An account that went inactive (deactivated, taken down, suspended, deleted) keeps its
 * attestation record, but the labeler must not vouch for it until the account is back:
 * the attestation is held as rejected for that reason, so the scheduler's sweep and the
 * verify worker pass it by, and the account's reactivation lifts exactly those rejections.
 * (There is no column of its own for this; the reason's prefix is the record.)
 */
const ACCOUNT_INACTIVE = 'account inactive'

/** The rejection reason an inactive account's attestation carries. */
export function accountInactiveReason(status: string | undefined): string {
  return `${ACCOUNT_INACTIVE} (${status ?? 'no status given'})`
}

/** An attestation held back only because its account is inactive. */
export const heldForInactiveAccount: SQL = sql`(${attestations.state} = 'rejected' and starts_with(${attestations.rejectionReason}, ${`${ACCOUNT_INACTIVE} (`}))`

/**
 * Attestations whose account's events matter: the live ones, and those waiting for their
 * account to come back.
 */
export const watchedAttestation = and(
  not(attestations.deleted),
  or(eq(attestations.state, 'valid'), heldForInactiveAccount),
) as SQL
