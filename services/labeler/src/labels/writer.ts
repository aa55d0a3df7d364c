import type { Db, Tx } from '@atmos/db'
import { labelSigningKeys, labels } from '@atmos/db'
import { type SignedLabel, signLabel } from '@atmos/labels'
import { type Clock, systemClock } from '@atmos/runtime'
import { emitEvents } from '@atmos/webhook-events'
import type { Secp256k1Keypair } from '@atproto/crypto'
import { and, eq, isNull, ne, sql } from 'drizzle-orm'
import { labelWireBytes, labelWireJson, rowToLabel } from './rows.ts'

/** Channel on which a commit of new labels is announced (payload: the highest new seq). */
export const LABELS_CHANNEL = 'atmos_labels'
/** Payload on LABELS_CHANNEL when signatures changed but no new label was written. */
export const RESIGNED = 'resigned'

/**
 * Transaction-scoped advisory lock every label writer takes before it draws a sequence
 * number. Numbers from a Postgres sequence alone would commit out of order across
 * concurrent transactions, and a subscriber that saw seq N could later find N-1 appear;
 * holding this lock until commit makes seq order and visibility order the same.
 */
export const LABEL_WRITER_LOCK = 0x61746d6f736c626cn // "atmoslbl"

export type LabelSigner = { keypair: Secp256k1Keypair; src: string }

/** One intended state of one label on one subject: held (neg false) or withdrawn (neg true). */
export type LabelChange = { uri: string; val: string; neg: boolean; exp?: string; reason: string; renewal?: boolean }

/**
 * The state a label should be in. A held label may carry an expiry; when one is already
 * published that lapses later than `renewWithinMs` from now, it stands (no churn on every
 * re-verification), otherwise a fresh label with the new `exp` is emitted.
 */
export type WantedLabel = { held: boolean; exp?: string; renewWithinMs?: number; reason?: string }

/** A label as written; `renewed` marks a held label re-emitted only to extend its expiry. */
export type StoredLabel = SignedLabel & { seq: number; renewed?: true }

/** Whether a published label row asserts its value now: not negated and not expired. */
export function isHeld(row: { neg: boolean; exp: string | null }, now: Date): boolean {
  return !row.neg && (row.exp === null || Date.parse(row.exp) > now.getTime())
}

/** Whether a held label must be re-emitted to carry the wanted expiry. */
function needsRenewal(row: { exp: string | null }, want: WantedLabel, now: Date): boolean {
  if (want.exp === undefined) return false
  if (row.exp === null) return true
  return Date.parse(row.exp) - now.getTime() <= (want.renewWithinMs ?? 0)
}

/**
 * Signs and stores label changes, one row per (src, uri, cid, val) that moves to a fresh
 * seq on each change, and announces the commit. Labels are only ever written here.
 */
export class LabelWriter {
  readonly db: Db
  readonly signer: LabelSigner
  readonly clock: Clock
  private keyId: number | undefined

  constructor(db: Db, signer: LabelSigner, clock: Clock = systemClock) {
    this.db = db
    this.signer = signer
    this.clock = clock
  }

  /**
   * Brings the labels on `uri` to the wanted states, emitting only those that differ from
   * what is published (so repeating a verification emits nothing). Returns what it emitted.
   */
  async reconcile(uri: string, wanted: Map<string, WantedLabel>, reason: string, tx?: Tx): Promise<StoredLabel[]> {
    // Inside the caller's transaction when given one, so that the labels commit with
    // whatever caused them (an ingest event and its cursor, a verification run).
    if (tx) return this.reconcileLocked(tx, uri, wanted, reason)
    return this.db.transaction((own) => this.reconcileLocked(own, uri, wanted, reason))
  }

  private async reconcileLocked(
    tx: Tx,
    uri: string,
    wanted: Map<string, WantedLabel>,
    why: string,
  ): Promise<StoredLabel[]> {
    await lockWriters(tx)
    const current = await tx
      .select({ val: labels.val, neg: labels.neg, exp: labels.exp })
      .from(labels)
      .where(and(eq(labels.src, this.signer.src), eq(labels.uri, uri)))
    const now = this.clock.now()
    const changes: LabelChange[] = []
    for (const [val, want] of wanted) {
      const row = current.find((r) => r.val === val)
      // A label decided from figures records them rather than the event that asked.
      const reason = want.reason ?? why
      if (want.held) {
        const held = row !== undefined && isHeld(row, now)
        if (held && !needsRenewal(row, want, now)) continue
        changes.push({
          uri,
          val,
          neg: false,
          exp: want.exp,
          reason: held ? `renewed: ${reason}` : reason,
          renewal: held,
        })
      } else {
        // Never issued, or withdrawn already: nothing to negate.
        if (!row || row.neg) continue
        changes.push({ uri, val, neg: true, reason })
      }
    }
    return this.writeLocked(tx, changes)
  }

  /** Emits the given changes unconditionally (an operator's explicit action, a re-sign). */
  async emit(changes: LabelChange[]): Promise<StoredLabel[]> {
    return this.db.transaction(async (tx) => {
      await lockWriters(tx)
      return this.writeLocked(tx, changes)
    })
  }

  /**
   * After a key rotation (same labeler DID, new signing key), re-signs every label of ours
   * that an older key signed, in small batches in the background: content and seq stay as
   * they are, only `sig` changes, so consumers that re-read or replay get signatures the
   * DID document's current `#atproto_label` key verifies. Labels with another `src` (an
   * earlier did:key identity) are a different labeler's and are left alone. Returns how
   * many were re-signed.
   */
  async resignStale(opts: { batch?: number; signal?: AbortSignal } = {}): Promise<number> {
    const batch = opts.batch ?? 500
    const keyId = await this.db.transaction((tx) => this.signingKeyId(tx))
    const stale = and(eq(labels.src, this.signer.src), ne(labels.signingKeyId, keyId))
    let total = 0
    while (!opts.signal?.aborted) {
      const done = await this.db.transaction(async (tx) => {
        // SKIP LOCKED: a writer moving one of these rows to a new seq re-signs it anyway.
        const rows = await tx.select().from(labels).where(stale).orderBy(labels.seq).limit(batch).for('update', {
          skipLocked: true,
        })
        for (const row of rows) {
          const { sig: _old, ...unsigned } = rowToLabel(row)
          const signed = await signLabel(unsigned, this.signer.keypair)
          await tx
            .update(labels)
            .set({
              sig: Buffer.from(signed.sig),
              wireJson: labelWireJson(signed),
              wireCbor: labelWireBytes(signed),
              signingKeyId: keyId,
            })
            .where(eq(labels.seq, row.seq))
        }
        // Cached queryLabels pages in every process hold the old signatures.
        if (rows.length) await tx.execute(sql`select pg_notify(${LABELS_CHANNEL}, ${RESIGNED})`)
        return rows.length
      })
      total += done
      if (done < batch) break
    }
    if (!opts.signal?.aborted) {
      // A key that signs nothing any more is retired (kept: it names who signed history).
      await this.db
        .update(labelSigningKeys)
        .set({ retiredAt: this.clock.now() })
        .where(
          and(
            ne(labelSigningKeys.id, keyId),
            isNull(labelSigningKeys.retiredAt),
            sql`not exists (select 1 from labels where labels.signing_key_id = ${labelSigningKeys.id})`,
          ),
        )
    }
    return total
  }

  /** The signing key's row, recorded on first use so every label names the key that signed it. */
  private async signingKeyId(tx: Tx): Promise<number> {
    if (this.keyId !== undefined) return this.keyId
    const [key] = await tx
      .insert(labelSigningKeys)
      .values({ didKey: this.signer.keypair.did() })
      .onConflictDoUpdate({ target: labelSigningKeys.didKey, set: { retiredAt: null } })
      .returning({ id: labelSigningKeys.id })
    this.keyId = key!.id
    return this.keyId
  }

  private async writeLocked(tx: Tx, changes: LabelChange[]): Promise<StoredLabel[]> {
    const out: StoredLabel[] = []
    if (!changes.length) return out
    const signingKeyId = await this.signingKeyId(tx)
    for (const change of changes) {
      const [next] = await tx.execute<{ seq: string }>(sql`select nextval('label_seq')::text as seq`)
      const seq = Number(next!.seq)
      const signed = await signLabel(
        {
          ver: 1,
          src: this.signer.src,
          uri: change.uri,
          val: change.val,
          neg: change.neg || undefined,
          cts: this.clock.now().toISOString(),
          exp: change.exp,
        },
        this.signer.keypair,
      )
      await tx
        .delete(labels)
        .where(
          and(
            eq(labels.src, signed.src),
            eq(labels.uri, signed.uri),
            eq(labels.val, signed.val),
            sql`${labels.cid} is not distinct from ${signed.cid ?? null}`,
          ),
        )
      await tx.insert(labels).values({
        seq,
        ver: 1,
        src: signed.src,
        uri: signed.uri,
        cid: signed.cid ?? null,
        val: signed.val,
        neg: signed.neg === true,
        cts: signed.cts,
        exp: signed.exp ?? null,
        sig: Buffer.from(signed.sig),
        wireJson: labelWireJson(signed),
        wireCbor: labelWireBytes(signed),
        signingKeyId,
        reason: change.reason,
      })
      out.push(change.renewal ? { ...signed, seq, renewed: true } : { ...signed, seq })
    }
    // The member's webhooks hear of a label issued or negated, in this transaction; a renewal
    // (the same label with a later expiry) changes nothing a member acts on.
    await emitEvents(
      tx,
      changes
        .filter((c) => !c.renewal)
        .map((c) => ({
          did: c.uri,
          type: 'label.changed' as const,
          data: { did: c.uri, val: c.val, neg: c.neg, reason: c.reason, exp: c.exp ?? null },
        })),
    )
    if (out.length) {
      // Delivered to listeners only when this transaction commits.
      await tx.execute(sql`select pg_notify(${LABELS_CHANNEL}, ${String(out[out.length - 1]!.seq)})`)
    }
    return out
  }
}

async function lockWriters(tx: Tx) {
  await tx.execute(sql`select pg_advisory_xact_lock(${LABEL_WRITER_LOCK.toString()}::bigint)`)
}
