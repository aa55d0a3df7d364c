import { attestations, type Db, ingestCursors, type Tx, verificationStatus } from '@atmos/db'
import { ATTESTATION_COLLECTION, validateAttestation } from '@atmos/lexicon'
import type { Logger } from '@atmos/runtime'
import { and, eq, sql } from 'drizzle-orm'
import { lockDomains, releaseHolds } from '../domains/holds.ts'
import type { LabelManager } from '../labels/manager.ts'
import type { StoredLabel } from '../labels/writer.ts'
import type { VerifyRequest } from '../verify/requests.ts'
import { accountInactiveReason, heldForInactiveAccount, watchedAttestation } from './account-status.ts'
import type { IngestEvent } from './events.ts'
import type { MemberFilter } from './member-filter.ts'
import { boundedReason, knownFields, rejectedRecordPrefix } from './stored-record.ts'

export type { VerifyRequest }

export type ApplyResult = {
  outcome: Outcome
  verify?: VerifyRequest[]
  labels?: StoredLabel[]
  /** Set when the event took a watched attestation away: whether the DID still has one. */
  watched?: boolean
}

export type Outcome = 'stored' | 'rejected' | 'refused' | 'deleted' | 'reverify' | 'revoked' | 'dropped' | 'unchanged'

/** The atproto record-key syntax; anything else (a NUL, a newline) never reaches a row. */
const RECORD_KEY = /^(?!\.{1,2}$)[A-Za-z0-9._~:-]{1,512}$/
/** A CID's multibase text, as far as we store it. */
const CID_TEXT = /^[A-Za-z0-9]{1,200}$/

/**
 * Applies one event to Postgres in a single transaction together with the source's
 * cursor, so that a crash replays the event instead of losing it. Verification requests
 * are recorded in the same transaction (attestations.verify_requested_at) and handed to
 * the queue by the caller after commit.
 */
export class IngestProcessor {
  private readonly db: Db
  private readonly labels: LabelManager
  private readonly members: MemberFilter
  private readonly logger: Logger
  private readonly maxRecordsPerDid: number
  readonly source: string

  constructor(opts: {
    db: Db
    labels: LabelManager
    members: MemberFilter
    logger: Logger
    source: string
    /** Rows one DID may hold, whatever their state (labeler.ingest.maxRecordsPerDid). */
    maxRecordsPerDid: number
  }) {
    this.maxRecordsPerDid = opts.maxRecordsPerDid
    this.db = opts.db
    this.labels = opts.labels
    this.members = opts.members
    this.logger = opts.logger
    this.source = opts.source
  }

  /** Cheap test, no I/O: would this event change anything? */
  isRelevant(event: IngestEvent): boolean {
    if (event.kind === 'record' || event.kind === 'delete') return event.collection === ATTESTATION_COLLECTION
    return this.members.has(event.did)
  }

  async apply(event: IngestEvent): Promise<ApplyResult> {
    if (!this.isRelevant(event)) return { outcome: 'dropped' }
    const result = await this.db.transaction(async (tx) => {
      const r = await this.applyIn(tx, event)
      await this.saveCursor(tx, event.cursor)
      return r
    })
    // Only after commit: the in-memory filter must never run ahead of the database.
    if (result.outcome === 'stored' || result.outcome === 'reverify') this.members.add(event.did)
    if (result.watched === false) this.members.delete(event.did)
    return result
  }

  private async applyIn(tx: Tx, event: IngestEvent): Promise<ApplyResult> {
    switch (event.kind) {
      case 'record':
        return this.applyRecord(tx, event)
      case 'delete': {
        const [held] = await tx
          .select({ domain: attestations.domain })
          .from(attestations)
          .where(
            and(eq(attestations.did, event.did), eq(attestations.rkey, event.rkey), eq(attestations.deleted, false)),
          )
        if (!held) return { outcome: 'unchanged' }
        // The domain's lock before its rows: the verify worker takes them in that order too.
        await lockDomains(tx, [held.domain])
        const gone = await tx
          .update(attestations)
          .set({ deleted: true, deletedAt: new Date(), verifyRequestedAt: null, updatedAt: new Date() })
          .where(
            and(eq(attestations.did, event.did), eq(attestations.rkey, event.rkey), eq(attestations.deleted, false)),
          )
          .returning({ id: attestations.id })
        if (!gone.length) return { outcome: 'unchanged' }
        return this.withdrawn(tx, event.did, held.domain, 'attestation record deleted', 'deleted')
      }
      case 'identity':
        return this.requestVerification(tx, event.did, 'identity')
      case 'account': {
        if (event.active) return this.reactivate(tx, event.did)
        return this.deactivate(tx, event.did, event.status)
      }
    }
  }

  private async applyRecord(tx: Tx, event: Extract<IngestEvent, { kind: 'record' }>): Promise<ApplyResult> {
    if (!RECORD_KEY.test(event.rkey) || (event.cid !== undefined && !CID_TEXT.test(event.cid))) {
      this.logger.info({ did: event.did }, 'record with an impossible key or CID refused')
      return { outcome: 'refused' }
    }
    if (await this.atRecordLimit(tx, event.did, event.rkey)) {
      this.logger.info(
        { did: event.did, rkey: event.rkey, limit: this.maxRecordsPerDid },
        'record refused: the account holds as many attestation rows as it may',
      )
      return { outcome: 'refused' }
    }
    const [existing] = await tx
      .select({
        domain: attestations.domain,
        cid: attestations.cid,
        state: attestations.state,
        deleted: attestations.deleted,
      })
      .from(attestations)
      .where(and(eq(attestations.did, event.did), eq(attestations.rkey, event.rkey)))
    const live = existing !== undefined && !existing.deleted && existing.state === 'valid'
    // A replay (the cursor rewinds on reconnect) of the version we hold changes nothing; in
    // particular a grandfathered record under the legacy key `self` stays valid.
    if (live && event.cid !== undefined && existing.cid === event.cid) return { outcome: 'unchanged' }
    const validation = validateAttestation(event.record, event.rkey)
    const now = new Date()
    if (!validation.success) {
      if (live) await lockDomains(tx, [existing.domain])
      const reason = boundedReason(validation.error)
      this.logger.info({ did: event.did, rkey: event.rkey, reason }, 'attestation rejected')
      const record = rejectedRecordPrefix(event.record)
      await tx
        .insert(attestations)
        .values({
          did: event.did,
          rkey: event.rkey,
          cid: event.cid,
          state: 'rejected',
          rejectionReason: reason,
          record,
        })
        .onConflictDoUpdate({
          target: [attestations.did, attestations.rkey],
          set: {
            cid: event.cid,
            state: 'rejected',
            rejectionReason: reason,
            record,
            deleted: false,
            verifyRequestedAt: null,
            updatedAt: now,
          },
        })
      // A record that turned invalid no longer supports the domain it held.
      if (live) return this.withdrawn(tx, event.did, existing.domain, `attestation rejected: ${reason}`, 'rejected')
      return { outcome: 'rejected' }
    }
    const r = validation.value
    const values = {
      cid: event.cid,
      domain: r.domain,
      dkimSelectors: r.dkimSelectors,
      relayMember: r.relayMember === true,
      recordCreatedAt: r.createdAt,
      record: knownFields(r),
      state: 'valid' as const,
      rejectionReason: null,
      deleted: false,
      deletedAt: null,
      verifyRequestedAt: now,
      verifyTrigger: 'ingest' as const,
      updatedAt: now,
    }
    const [row] = await tx
      .insert(attestations)
      .values({ did: event.did, rkey: event.rkey, ...values })
      .onConflictDoUpdate({
        target: [attestations.did, attestations.rkey],
        set: values,
        // A replay (the cursor rewinds a few seconds on reconnect) of the version we hold changes nothing.
        setWhere: sql`${attestations.cid} is distinct from ${event.cid ?? null} or ${attestations.deleted} or ${attestations.state} <> 'valid'`,
      })
      .returning({ id: attestations.id })
    if (!row) return { outcome: 'unchanged' }
    return { outcome: 'stored', verify: [{ did: event.did, rkey: event.rkey, trigger: 'ingest', requestedAt: now }] }
  }

  /**
   * One attestation of the DID is gone (deleted, or rejected): the DID stops holding its
   * domain unless another live attestation of its own still names it, the domain's other
   * claimants are asked to verify, and the DID's labels follow what it still holds.
   */
  private async withdrawn(
    tx: Tx,
    did: string,
    domain: string | null,
    reason: string,
    outcome: 'deleted' | 'rejected',
  ): Promise<ApplyResult> {
    const verify =
      domain && !(await this.stillAttests(tx, did, domain)) ? await releaseHolds(tx, did, [domain], new Date()) : []
    const labels = await this.labels.recompute(tx, did, reason)
    const [left] = await tx
      .select({ id: attestations.id })
      .from(attestations)
      .where(and(eq(attestations.did, did), watchedAttestation))
      .limit(1)
    return { outcome, labels, verify, watched: left !== undefined }
  }

  /** Whether a live attestation of the DID other than the one just withdrawn names the domain. */
  private async stillAttests(tx: Tx, did: string, domain: string): Promise<boolean> {
    const [row] = await tx
      .select({ id: attestations.id })
      .from(attestations)
      .where(
        and(
          eq(attestations.did, did),
          eq(attestations.domain, domain),
          eq(attestations.deleted, false),
          eq(attestations.state, 'valid'),
        ),
      )
      .limit(1)
    return row !== undefined
  }

  /**
   * Whether a record under a key the DID has no row for yet would pass the DID's limit.
   * Every row counts, rejected and deleted ones too: otherwise writing and deleting records
   * under fresh keys would grow the table without end. A key that already has a row is
   * always applied (it changes that row). Ingest is one process, events one at a time, so
   * counting then inserting in its transaction cannot race.
   */
  private async atRecordLimit(tx: Tx, did: string, rkey: string): Promise<boolean> {
    const [row] = await tx
      .select({
        held: sql<number>`count(*)::int`,
        known: sql<boolean>`bool_or(${attestations.rkey} = ${rkey})`,
      })
      .from(attestations)
      .where(eq(attestations.did, did))
    if (!row || row.known) return false
    return row.held >= this.maxRecordsPerDid
  }

  private async requestVerification(tx: Tx, did: string, trigger: 'identity'): Promise<ApplyResult> {
    const now = new Date()
    const rows = await tx
      .update(attestations)
      .set({ verifyRequestedAt: now, verifyTrigger: trigger })
      .where(and(eq(attestations.did, did), eq(attestations.deleted, false), eq(attestations.state, 'valid')))
      .returning({ rkey: attestations.rkey })
    if (!rows.length) return { outcome: 'unchanged' }
    return { outcome: 'reverify', verify: rows.map((r) => ({ did, rkey: r.rkey, trigger, requestedAt: now })) }
  }

  /**
   * The account went inactive: its attestations are held back, it holds none of its
   * domains any more (their other claimants are asked), and its labels follow, in the same
   * transaction, so that no sweep or verification in flight issues them again.
   */
  private async deactivate(tx: Tx, did: string, status: string | undefined): Promise<ApplyResult> {
    const reason = accountInactiveReason(status)
    const held = await tx
      .select({ domain: verificationStatus.domain })
      .from(verificationStatus)
      .where(eq(verificationStatus.did, did))
    const attested = await tx
      .select({ domain: attestations.domain })
      .from(attestations)
      .where(eq(attestations.did, did))
    await lockDomains(
      tx,
      [...held, ...attested].map((r) => r.domain),
    )
    await tx
      .update(attestations)
      .set({ state: 'rejected', rejectionReason: reason, verifyRequestedAt: null, updatedAt: new Date() })
      .where(and(eq(attestations.did, did), watchedAttestation))
    const verify = await releaseHolds(tx, did, 'all', new Date())
    const labels = await this.labels.recompute(tx, did, reason)
    return { outcome: 'revoked', labels, verify }
  }

  /** The account is back: what its inactivity held back is live again, and verified afresh. */
  private async reactivate(tx: Tx, did: string): Promise<ApplyResult> {
    await tx
      .update(attestations)
      .set({ state: 'valid', rejectionReason: null, updatedAt: new Date() })
      .where(and(eq(attestations.did, did), eq(attestations.deleted, false), heldForInactiveAccount))
    return this.requestVerification(tx, did, 'identity')
  }

  async saveCursor(tx: Tx | Db, cursor: number): Promise<void> {
    await tx
      .insert(ingestCursors)
      .values({ source: this.source, cursor, updatedAt: new Date() })
      .onConflictDoUpdate({
        target: ingestCursors.source,
        set: { cursor, updatedAt: new Date() },
        // Never move backwards (a replayed event after a rewind).
        setWhere: sql`${ingestCursors.cursor} < ${cursor}`,
      })
  }

  async loadCursor(): Promise<number | undefined> {
    const [row] = await this.db.select().from(ingestCursors).where(eq(ingestCursors.source, this.source))
    return row?.cursor
  }
}
