import { type Db, labels, members, type Tx } from '@atmos/db'
import { and, eq } from 'drizzle-orm'
import { LABEL_VALUES } from './values.ts'
import type { StoredLabel, WantedLabel } from './writer.ts'
import { isHeld, type LabelWriter } from './writer.ts'

/**
 * How long a positive label is good for. Consumers stop trusting a label whose `exp` has
 * passed, so a labeler that stops re-verifying stops vouching; a re-verification renews a
 * label only when it would lapse within one interval, so there is no daily churn.
 */
export type ExpiryPolicy = { ttlMs: number; renewWithinMs: number }

export type VerificationOutcome = 'pass' | 'fail' | 'temperror'

/**
 * What the labels on a member should be, decided in one place:
 *  - verified-mail-operator while the last verification passed;
 *  - relay-member while that holds and the member is active in the relay (not suspended);
 *  - a permanent failure withdraws both; a temporary error changes nothing (the
 *    scheduler decides when a lasting outage counts as lost).
 */
export class LabelManager {
  private readonly db: Db
  private readonly writer: LabelWriter
  private readonly expiry: ExpiryPolicy

  constructor(db: Db, writer: LabelWriter, expiry: ExpiryPolicy) {
    this.db = db
    this.writer = writer
    this.expiry = expiry
  }

  /** A held label, expiring one TTL from now unless the published one lasts long enough. */
  private held(holds: boolean): WantedLabel {
    if (!holds) return { held: false }
    const exp = new Date(this.writer.clock.now().getTime() + this.expiry.ttlMs).toISOString()
    return { held: true, exp, renewWithinMs: this.expiry.renewWithinMs }
  }

  async applyVerification(tx: Tx, did: string, outcome: VerificationOutcome, reason: string): Promise<StoredLabel[]> {
    if (outcome === 'temperror') return []
    if (outcome === 'fail') return this.withdrawAll(did, reason, tx)
    const active = await this.isActiveMember(tx, did)
    return this.writer.reconcile(
      did,
      new Map([
        [LABEL_VALUES.verifiedMailOperator, this.held(true)],
        [LABEL_VALUES.relayMember, this.held(active)],
      ]),
      reason,
      tx,
    )
  }

  /** Negates every label this labeler holds on the DID (attestation gone, account gone, check failed). */
  async withdrawAll(did: string, reason: string, tx?: Tx): Promise<StoredLabel[]> {
    return this.writer.reconcile(
      did,
      new Map(Object.values(LABEL_VALUES).map((val) => [val, { held: false }])),
      reason,
      tx,
    )
  }

  /** A member was suspended or reinstated: relay-member follows, if the domain is verified. */
  async applyMemberStatus(did: string, reason: string): Promise<StoredLabel[]> {
    return this.db.transaction(async (tx) => {
      const active = await this.isActiveMember(tx, did)
      const [vmo] = await tx
        .select({ neg: labels.neg, exp: labels.exp })
        .from(labels)
        .where(
          and(
            eq(labels.src, this.writer.signer.src),
            eq(labels.uri, did),
            eq(labels.val, LABEL_VALUES.verifiedMailOperator),
          ),
        )
      const verified = vmo ? isHeld(vmo, this.writer.clock.now()) : false
      return this.writer.reconcile(
        did,
        new Map([[LABEL_VALUES.relayMember, this.held(active && verified)]]),
        reason,
        tx,
      )
    })
  }

  private async isActiveMember(tx: Tx, did: string): Promise<boolean> {
    const [m] = await tx.select({ status: members.status }).from(members).where(eq(members.did, did))
    return m?.status === 'active'
  }
}
