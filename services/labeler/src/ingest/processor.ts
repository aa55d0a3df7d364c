import { attestations, type Db, ingestCursors, type Tx } from '@atmos/db'
import { ATTESTATION_COLLECTION, ATTESTATION_RKEY, validateAttestation } from '@atmos/lexicon'
import type { Logger } from '@atmos/runtime'
import { and, eq, sql } from 'drizzle-orm'
import type { LabelManager } from '../labels/manager.ts'
import type { StoredLabel } from '../labels/writer.ts'
import { accountInactiveReason, heldForInactiveAccount, watchedAttestation } from './account-status.ts'
import type { IngestEvent } from './events.ts'
import type { MemberFilter } from './member-filter.ts'
import { boundedReason, knownFields, rejectedRecordPrefix } from './stored-record.ts'

export type VerifyRequest = { did: string; rkey: string; trigger: 'ingest' | 'identity'; requestedAt: Date }

export type ApplyResult = { outcome: Outcome; verify?: VerifyRequest; labels?: StoredLabel[] }

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
    const isSelf = (event.kind === 'record' || event.kind === 'delete') && event.rkey === ATTESTATION_RKEY
    if (isSelf && (result.outcome === 'deleted' || result.outcome === 'rejected')) this.members.delete(event.did)
    return result
  }

  private async applyIn(tx: Tx, event: IngestEvent): Promise<ApplyResult> {
    switch (event.kind) {
      case 'record':
        return this.applyRecord(tx, event)
      case 'delete': {
        const gone = await tx
          .update(attestations)
          .set({ deleted: true, deletedAt: new Date(), verifyRequestedAt: null, updatedAt: new Date() })
          .where(
            and(eq(attestations.did, event.did), eq(attestations.rkey, event.rkey), eq(attestations.deleted, false)),
          )
          .returning({ id: attestations.id })
        if (!gone.length) return { outcome: 'unchanged' }
        // Only the one attestation per account (rkey self) carries labels.
        if (event.rkey === ATTESTATION_RKEY) {
          const labels = await this.labels.withdrawAll(event.did, 'attestation record deleted', tx)
          return { outcome: 'deleted', labels }
        }
        return { outcome: 'deleted' }
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
    const validation =
      event.rkey === ATTESTATION_RKEY
        ? validateAttestation(event.record)
        : {
            success: false as const,
            error: `record key must be "${ATTESTATION_RKEY}" (one attestation per account), got "${event.rkey.slice(0, 64)}"`,
          }
    const now = new Date()
    if (!validation.success) {
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
      // A record that turned invalid no longer supports the labels it earned.
      if (event.rkey === ATTESTATION_RKEY) {
        const labels = await this.labels.withdrawAll(event.did, `attestation rejected: ${reason}`, tx)
        return { outcome: 'rejected', labels }
      }
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
    return { outcome: 'stored', verify: { did: event.did, rkey: event.rkey, trigger: 'ingest', requestedAt: now } }
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
    const [row] = await tx
      .update(attestations)
      .set({ verifyRequestedAt: now, verifyTrigger: trigger })
      .where(and(eq(attestations.did, did), eq(attestations.deleted, false), eq(attestations.state, 'valid')))
      .returning({ rkey: attestations.rkey })
    if (!row) return { outcome: 'unchanged' }
    return { outcome: 'reverify', verify: { did, rkey: row.rkey, trigger, requestedAt: now } }
  }

  /**
   * The account went inactive: its labels are withdrawn and its attestation held back in
   * the same transaction, so that no sweep or verification in flight issues them again.
   */
  private async deactivate(tx: Tx, did: string, status: string | undefined): Promise<ApplyResult> {
    const reason = accountInactiveReason(status)
    await tx
      .update(attestations)
      .set({ state: 'rejected', rejectionReason: reason, verifyRequestedAt: null, updatedAt: new Date() })
      .where(and(eq(attestations.did, did), watchedAttestation))
    const labels = await this.labels.withdrawAll(did, reason, tx)
    return { outcome: 'revoked', labels }
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
