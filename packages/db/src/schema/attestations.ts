import { sql } from 'drizzle-orm'
import { bigint, boolean, check, index, jsonb, pgTable, primaryKey, text, uniqueIndex } from 'drizzle-orm/pg-core'
import { at, createdAt, id, oneOf, ref } from './columns.ts'

export const ATTESTATION_STATES = ['valid', 'rejected'] as const
/** `release`: another account gave up a domain this attestation claims, so the claim is looked at again. */
export const VERIFICATION_TRIGGERS = ['ingest', 'schedule', 'manual', 'admin', 'identity', 'release'] as const

/**
 * `email.atmos.attestation` records seen on the network, one row per (did, rkey), kept
 * in their latest version. A record that failed lexicon validation is stored as
 * rejected with the reason, so an operator can see why nothing happened.
 */
export const attestations = pgTable(
  'attestations',
  {
    id: id(),
    did: text().notNull(),
    rkey: text().notNull(),
    cid: text(),
    /** Lower-case; null only for a rejected record that had no usable domain. */
    domain: text(),
    dkimSelectors: text().array().notNull().default(sql`'{}'::text[]`),
    relayMember: boolean().notNull().default(false),
    /** The record's own createdAt, as the member wrote it. */
    recordCreatedAt: text(),
    record: jsonb(),
    state: text({ enum: ATTESTATION_STATES }).notNull().default('valid'),
    rejectionReason: text(),
    seenAt: createdAt(),
    updatedAt: createdAt(),
    deleted: boolean().notNull().default(false),
    deletedAt: at(),
    /**
     * Set, in the transaction that records the event, when the record needs verifying;
     * the verify job goes to Redis after commit, and a reconciler re-enqueues any request
     * that no verification run has answered (so losing Redis loses no verification).
     */
    verifyRequestedAt: at(),
    verifyTrigger: text({ enum: VERIFICATION_TRIGGERS }),
  },
  (t) => [
    uniqueIndex('attestations_did_rkey_key').on(t.did, t.rkey),
    index('attestations_domain_idx').on(t.domain),
    // The scheduler walks live attestations in id order.
    index('attestations_live_idx').on(t.id).where(sql`NOT deleted AND state = 'valid'`),
    index('attestations_verify_requested_idx').on(t.verifyRequestedAt).where(sql`verify_requested_at IS NOT NULL`),
    check('attestations_state_check', sql.raw(`state IN (${oneOf(ATTESTATION_STATES)})`)),
  ],
)

/** Where each event source left off; written in the same transaction as what the event caused. */
export const ingestCursors = pgTable('ingest_cursors', {
  /** e.g. `jetstream` or `firehose:<host>` */
  source: text().primaryKey(),
  /** Jetstream `time_us`, or the firehose `seq`. */
  cursor: bigint({ mode: 'number' }).notNull(),
  updatedAt: createdAt(),
})

export const CHECK_NAMES = ['domain_control', 'mx', 'spf', 'dkim', 'dmarc'] as const
export type CheckName = (typeof CHECK_NAMES)[number]
export const CHECK_OUTCOMES = ['pass', 'fail', 'temperror'] as const
export type CheckOutcome = (typeof CHECK_OUTCOMES)[number]

/** One verification of one attestation: all five checks, with the overall outcome. */
export const verificationRuns = pgTable(
  'verification_runs',
  {
    id: id(),
    attestationId: ref().references(() => attestations.id, { onDelete: 'set null' }),
    did: text().notNull(),
    domain: text().notNull(),
    trigger: text({ enum: VERIFICATION_TRIGGERS }).notNull(),
    /** pass only when every check passed; fail when any failed; else temperror. */
    outcome: text({ enum: CHECK_OUTCOMES }).notNull(),
    startedAt: createdAt(),
    finishedAt: at(),
  },
  (t) => [
    index('verification_runs_did_idx').on(t.did, t.startedAt),
    check('verification_runs_outcome_check', sql.raw(`outcome IN (${oneOf(CHECK_OUTCOMES)})`)),
    check('verification_runs_trigger_check', sql.raw(`trigger IN (${oneOf(VERIFICATION_TRIGGERS)})`)),
  ],
)

/** One check within a run, with a reason a person can act on and non-fatal warnings. */
export const verificationChecks = pgTable(
  'verification_checks',
  {
    id: id(),
    runId: ref()
      .notNull()
      .references(() => verificationRuns.id, { onDelete: 'cascade' }),
    check: text({ enum: CHECK_NAMES }).notNull(),
    outcome: text({ enum: CHECK_OUTCOMES }).notNull(),
    reason: text().notNull(),
    warnings: text().array().notNull().default(sql`'{}'::text[]`),
    /** The records looked at, for the admin's live check view. */
    details: jsonb(),
  },
  (t) => [
    uniqueIndex('verification_checks_run_check_key').on(t.runId, t.check),
    check('verification_checks_check_check', sql.raw(`"check" IN (${oneOf(CHECK_NAMES)})`)),
    check('verification_checks_outcome_check', sql.raw(`outcome IN (${oneOf(CHECK_OUTCOMES)})`)),
  ],
)

/**
 * The standing verification state of each domain a DID attests, which the label manager and
 * the relay act on: when it last passed, since when it has only seen temporary errors (the
 * grace period), and whether the DID holds the domain now. `holds` is true while the
 * attestation verifies (a temporary error within the grace period included); at most one
 * DID holds a domain, and the DID's labels follow from the domains it holds.
 */
export const verificationStatus = pgTable(
  'verification_status',
  {
    did: text().notNull(),
    domain: text().notNull(),
    holds: boolean().notNull().default(false),
    lastRunId: ref().references(() => verificationRuns.id, { onDelete: 'set null' }),
    lastOutcome: text({ enum: CHECK_OUTCOMES }).notNull(),
    lastRunAt: at().notNull(),
    lastPassAt: at(),
    temperrorSince: at(),
    nextDueAt: at(),
  },
  (t) => [
    primaryKey({ columns: [t.did, t.domain] }),
    uniqueIndex('verification_status_holder_key').on(t.domain).where(sql`holds`),
    index('verification_status_due_idx').on(t.nextDueAt),
  ],
)
