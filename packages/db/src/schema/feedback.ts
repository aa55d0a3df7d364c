import { sql } from 'drizzle-orm'
import { check, index, integer, jsonb, numeric, pgTable, text, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { at, bytea, createdAt, id, oneOf, ref } from './columns.ts'
import { domains, members } from './members.ts'

export const INBOUND_KINDS = [
  'unclassified',
  'arf',
  'dsn',
  'plain_bounce',
  'operator',
  'auto_reply',
  'reply',
  'dmarc',
] as const
export const INBOUND_STATES = ['received', 'processed', 'quarantined', 'forwarded'] as const

/**
 * What fbl-ingest's listener found at receipt (mailauth, with the client's IP, HELO and MAIL
 * FROM): whether the message may be forwarded as mail from its From domain's owner.
 */
export type InboundAuth = {
  /** DMARC for the From domain: pass, fail, none, temperror, permerror; 'error' when not checked. */
  dmarc: string
  fromDomain: string | null
  spf: string
  /** Each DKIM signature's domain and result, `example.com:pass`. */
  dkim: string[]
}

/** fbl-ingest's raw spool: every message accepted on port 25, stored before the 250. */
export const inboundMessages = pgTable(
  'inbound_messages',
  {
    id: id(),
    receivedAt: createdAt(),
    remoteAddress: text(),
    heloName: text(),
    mailFrom: text().notNull(),
    rcptTo: text().array().notNull(),
    size: integer().notNull(),
    raw: bytea().notNull(),
    kind: text({ enum: INBOUND_KINDS }).notNull().default('unclassified'),
    state: text({ enum: INBOUND_STATES }).notNull().default('received'),
    /** For operator mail: the relay message that forwarded it outside. */
    forwardedMessageId: uuid(),
    processedAt: at(),
    /** Null for rows stored before it was checked. */
    auth: jsonb().$type<InboundAuth>(),
    /** Set when `raw` was emptied by the retention (fblIngest.rawRetention); the row and its events stay. */
    rawPurgedAt: at(),
  },
  (t) => [
    index('inbound_messages_received_idx').on(t.state, t.receivedAt),
    index('inbound_messages_purgeable_idx').on(t.receivedAt).where(sql`state <> 'received' AND raw_purged_at IS NULL`),
    index('inbound_messages_kind_idx').on(t.kind, t.receivedAt),
    check('inbound_messages_kind_check', sql.raw(`kind IN (${oneOf(INBOUND_KINDS)})`)),
    check('inbound_messages_state_check', sql.raw(`state IN (${oneOf(INBOUND_STATES)})`)),
  ],
)

/** Reports that could not be parsed or attributed: kept with the reason, never dropped. */
export const quarantinedReports = pgTable(
  'quarantined_reports',
  {
    id: id(),
    inboundId: ref()
      .notNull()
      .references(() => inboundMessages.id, { onDelete: 'cascade' }),
    reason: text().notNull(),
    createdAt: createdAt(),
    releasedAt: at(),
  },
  (t) => [index('quarantined_reports_open_idx').on(t.createdAt).where(sql`released_at IS NULL`)],
)

/** An unsubscribe (ARF opt-out, Apple's one-click mail) is the recipient's wish, not a complaint: it never counts. */
export const FEEDBACK_TYPES = ['complaint', 'hard_bounce', 'soft_bounce', 'unsubscribe'] as const
export type FeedbackType = (typeof FEEDBACK_TYPES)[number]

/** A complaint or bounce, attributed to a member and, where known, a message. */
export const feedbackEvents = pgTable(
  'feedback_events',
  {
    id: id(),
    type: text({ enum: FEEDBACK_TYPES }).notNull(),
    memberId: ref().references(() => members.id, { onDelete: 'cascade' }),
    messageId: uuid(),
    inboundId: ref().references(() => inboundMessages.id, { onDelete: 'set null' }),
    recipient: text(),
    /** Enhanced status (5.1.1) and reply code (550) where the report gave them. */
    status: text(),
    replyCode: integer(),
    /** user_unknown, mailbox_full, policy, spam_content, host_unknown, expired … */
    reasonClass: text(),
    /** ARF Feedback-Type (abuse, fraud …) for complaints. */
    feedbackType: text(),
    /** Where the event came from: dsn, arf, delivery (our own 5xx), plain_bounce. */
    source: text().notNull(),
    details: jsonb(),
    occurredAt: createdAt(),
  },
  (t) => [
    index('feedback_events_member_idx').on(t.memberId, t.type, t.occurredAt),
    index('feedback_events_message_idx').on(t.messageId),
    // The operator console's pool complaint figures: one type over a time range, all members.
    index('feedback_events_type_at_idx').on(t.type, t.occurredAt),
    // One message, one vote: a report about a spooled recipient (or its replay, or a DSN
    // listing the address 500 times) records at most one event a type. (Submission spools
    // one copy a recipient, so this is one event a message and type.)
    uniqueIndex('feedback_events_message_recipient_type_key')
      .on(t.messageId, t.recipient, t.type)
      .where(sql`message_id IS NOT NULL`),
    check('feedback_events_type_check', sql.raw(`type IN (${oneOf(FEEDBACK_TYPES)})`)),
  ],
)

export const SUPPRESSION_REASONS = ['hard_bounce', 'complaint', 'unsubscribe', 'manual'] as const

/** Addresses a member may not send to, with why and since when; bounces expire, complaints do not. */
export const suppressions = pgTable(
  'suppressions',
  {
    id: id(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    /** Lower-case address. */
    address: text().notNull(),
    /**
     * The member's domain whose mail led to the entry, when known. The list itself is the
     * member's, over all its domains (the README says why).
     */
    domainId: ref().references(() => domains.id, { onDelete: 'set null' }),
    reason: text({ enum: SUPPRESSION_REASONS }).notNull(),
    detail: text(),
    eventId: ref().references(() => feedbackEvents.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    expiresAt: at(),
    removedAt: at(),
    removedBy: text(),
  },
  (t) => [
    // At most one standing entry per member and address; the relay looks it up at RCPT.
    uniqueIndex('suppressions_member_address_key').on(t.memberId, t.address).where(sql`removed_at IS NULL`),
    check('suppressions_reason_check', sql.raw(`reason IN (${oneOf(SUPPRESSION_REASONS)})`)),
  ],
)

/**
 * Aggregate complaint figures a provider reports without per-message reports (Gmail's
 * Postmaster Tools by Feedback-ID), recorded or imported by an operator.
 */
export const aggregateFeedback = pgTable(
  'aggregate_feedback',
  {
    id: id(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    provider: text().notNull(),
    periodStart: at().notNull(),
    periodEnd: at().notNull(),
    complaintRate: numeric({ precision: 8, scale: 6 }).notNull(),
    volume: integer(),
    recordedBy: text().notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('aggregate_feedback_period_key').on(t.memberId, t.provider, t.periodStart)],
)
