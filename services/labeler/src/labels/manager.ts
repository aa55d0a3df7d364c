import { type Db, domains, labels, memberStatusChanges, members, type Tx, verificationStatus } from '@atmos/db'
import {
  type CleanSenderThresholds,
  cleanSenderFigures,
  DEFAULT_CLEAN_SENDER,
  decideCleanSender,
} from '@atmos/reputation'
import { and, eq, isNull, sql } from 'drizzle-orm'
import { LABEL_VALUES } from './values.ts'
import { isHeld, type LabelWriter, type StoredLabel, type WantedLabel } from './writer.ts'

/**
 * How long a positive label is good for. Consumers stop trusting a label whose `exp` has
 * passed, so a labeler that stops re-verifying stops vouching; a re-verification renews a
 * label only when it would lapse within one interval, so there is no daily churn.
 */
export type ExpiryPolicy = { ttlMs: number; renewWithinMs: number }

/** What a DID's labels follow from. */
export type LabelState = {
  /** Some domain the DID attests is held by it (verifies, or is within its grace period). */
  verified: boolean
  /** The member is active and some active relay domain of it is one the DID holds. */
  relayMember: boolean
  /** The member row of the DID, if it is one. */
  memberId: number | null
}

/** The state of a DID's labels, read from verification_status, members and domains. */
export async function labelState(tx: Tx, did: string): Promise<LabelState> {
  const [row] = await tx.execute<{ verified: boolean; relay_member: boolean; member_id: number | null }>(sql`select
    exists (
      select 1 from ${verificationStatus}
      where ${verificationStatus.did} = ${did} and ${verificationStatus.holds}
    ) as verified,
    exists (
      select 1 from ${domains}
      join ${members} on ${members.id} = ${domains.memberId}
      join ${verificationStatus} on ${verificationStatus.did} = ${members.did} and ${verificationStatus.domain} = ${domains.domain}
      where ${members.did} = ${did} and ${members.status} = 'active'
        and ${domains.removedAt} is null and ${domains.status} = 'active' and ${verificationStatus.holds}
    ) as relay_member,
    (select ${members.id} from ${members} where ${members.did} = ${did}) as member_id`)
  return {
    verified: row?.verified === true,
    relayMember: row?.relay_member === true,
    memberId: row?.member_id === null || row?.member_id === undefined ? null : Number(row.member_id),
  }
}

/**
 * The labels on the DIDs, decided in one place from that state:
 *  - verified-mail-operator while some domain the DID attests is held by it;
 *  - relay-member while the member is active and some active relay domain of it is held;
 *  - clean-sender while a relay member's 30-day figures stay clean, with hysteresis
 *    (packages/reputation's decideCleanSender): issued below the issue thresholds with enough
 *    volume, negated at the negate thresholds or with relay-member, else left as it stands;
 * each negated when that stops being true. Verification (so the scheduler's daily sweep),
 * deletion, rejection, account status and member-status events all come here.
 */
export class LabelManager {
  private readonly db: Db
  private readonly writer: LabelWriter
  private readonly expiry: ExpiryPolicy

  private readonly cleanSender: CleanSenderThresholds

  constructor(
    db: Db,
    writer: LabelWriter,
    expiry: ExpiryPolicy,
    cleanSender: CleanSenderThresholds = DEFAULT_CLEAN_SENDER,
  ) {
    this.db = db
    this.writer = writer
    this.expiry = expiry
    this.cleanSender = cleanSender
  }

  /**
   * A held label, expiring one TTL from now. Only a passing verification renews one that
   * stands (when it would lapse within an interval); anything else issues it if missing.
   */
  private held(holds: boolean, renew: boolean): WantedLabel {
    if (!holds) return { held: false }
    const exp = new Date(this.writer.clock.now().getTime() + this.expiry.ttlMs).toISOString()
    return { held: true, exp, renewWithinMs: renew ? this.expiry.renewWithinMs : 0 }
  }

  /** Brings the DID's labels to what its state says, in the caller's transaction. */
  async recompute(tx: Tx, did: string, reason: string, opts: { renew?: boolean } = {}): Promise<StoredLabel[]> {
    const state = await labelState(tx, did)
    const renew = opts.renew === true
    const clean = await this.cleanSenderWanted(tx, did, state, reason, renew)
    return this.writer.reconcile(
      did,
      new Map([
        [LABEL_VALUES.verifiedMailOperator, this.held(state.verified, renew)],
        [LABEL_VALUES.relayMember, this.held(state.relayMember, renew)],
        [LABEL_VALUES.cleanSender, clean],
      ]),
      reason,
      tx,
    )
  }

  /**
   * clean-sender from the member's 30-day figures and the label's own current state (the
   * hysteresis needs no other memory). The recorded reason carries the figures and thresholds.
   */
  private async cleanSenderWanted(
    tx: Tx,
    did: string,
    state: LabelState,
    why: string,
    renew: boolean,
  ): Promise<WantedLabel> {
    if (state.memberId === null || !state.relayMember) {
      return { held: false, reason: `clean-sender: not an active relay member (${why})` }
    }
    const [row] = await tx
      .select({ neg: labels.neg, exp: labels.exp })
      .from(labels)
      .where(and(eq(labels.src, this.writer.signer.src), eq(labels.uri, did), eq(labels.val, LABEL_VALUES.cleanSender)))
    const now = this.writer.clock.now()
    const current = row !== undefined && isHeld(row, now)
    const figures = await cleanSenderFigures(tx, state.memberId, now)
    const decision = decideCleanSender(current, true, figures, this.cleanSender)
    return { ...this.held(decision.held, renew), reason: `${decision.reason} (${why})` }
  }

  /** Negates every label this labeler holds on the DID (an explicit revocation). */
  async withdrawAll(did: string, reason: string, tx?: Tx): Promise<StoredLabel[]> {
    return this.writer.reconcile(
      did,
      new Map(Object.values(LABEL_VALUES).map((val) => [val, { held: false }])),
      reason,
      tx,
    )
  }

  /**
   * A member or one of its domains was suspended, reinstated, added or removed. `changeId`:
   * the member_status_changes row the event announced, marked applied in the same
   * transaction, so that an event lost with Redis after it was queued is sent again.
   */
  async applyMemberStatus(did: string, reason: string, changeId?: number): Promise<StoredLabel[]> {
    return this.db.transaction(async (tx) => {
      const emitted = await this.recompute(tx, did, reason)
      if (changeId !== undefined)
        await tx
          .update(memberStatusChanges)
          .set({ appliedAt: new Date() })
          .where(and(eq(memberStatusChanges.id, changeId), isNull(memberStatusChanges.appliedAt)))
      return emitted
    })
  }
}
