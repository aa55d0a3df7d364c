import { sql } from 'drizzle-orm'
import { boolean, check, date, index, integer, jsonb, pgTable, primaryKey, text, uuid } from 'drizzle-orm/pg-core'
import { at, bytea, createdAt, id, oneOf, ref } from './columns.ts'
import { domains, members } from './members.ts'

export const MESSAGE_STATES = ['queued', 'done'] as const
/**
 * `failed`: the relay itself stopped trying (the member was suspended or the recipient
 * suppressed after the message was queued); `last_reply` says why. Not a bounce: no MX
 * answered, so it is neither a feedback event nor a reason to suppress.
 */
export const RECIPIENT_STATES = ['queued', 'delivered', 'deferred', 'bounced', 'expired', 'failed'] as const
export type RecipientState = (typeof RECIPIENT_STATES)[number]

/**
 * The relay's spool: a message is committed here, signed and with its envelope, before
 * the 250 reply to DATA. Redis only carries delivery jobs that point at these rows.
 */
export const messages = pgTable(
  'messages',
  {
    /** Also the opaque token in the VERP address and the reference header. */
    id: uuid().primaryKey().defaultRandom(),
    /** The member who submitted it; null for the pool's own mail (fbl-ingest's forwards to the operator). */
    memberId: ref().references(() => members.id),
    /** The member's domain it was sent as (signed for); null for the pool's own mail. */
    domainId: ref().references(() => domains.id),
    /** The sender as the member gave it in MAIL FROM. */
    envelopeFrom: text().notNull(),
    /** The VERP return path the relay used on the wire. */
    returnPath: text().notNull(),
    messageIdHeader: text(),
    size: integer().notNull(),
    /** The message as it goes out: our headers and both DKIM signatures included. */
    body: bytea().notNull(),
    state: text({ enum: MESSAGE_STATES }).notNull().default('queued'),
    receivedAt: createdAt(),
    /** After this a message still undelivered bounces as expired. */
    expiresAt: at().notNull(),
    doneAt: at(),
    /**
     * When the body was dropped, a retention period after the message was done. The row
     * stays: bounces and complaints arriving weeks later are attributed through it.
     */
    bodyPurgedAt: at(),
    /**
     * The bounce notice (RFC 3464 DSN) the pool sent the envelope sender when this message
     * failed: set in the transaction that spools the notice, so there is at most one.
     */
    bounceNoticeId: uuid(),
    /**
     * The sender asked for REQUIRETLS (RFC 8689): every hop must be verified TLS, else the
     * message fails instead of going out in the clear or to an unauthenticated host.
     */
    requireTls: boolean().notNull().default(false),
    /**
     * The member's X-Atmos-Category (the header is removed before sending): decides whether
     * the message offered a one-click unsubscribe, and groups the account's per-category
     * volume, bounces and complaints. Null: none given.
     */
    category: text(),
    /**
     * SHA-256 (base64url) of the body as submitted, kept only for transactional categories:
     * one body to many recipients under a transactional category is bulk mail dodging the
     * unsubscribe, which the operator sees as a category mismatch.
     */
    bodyHash: text(),
  },
  (t) => [
    index('messages_member_idx').on(t.memberId, t.receivedAt),
    // The relay's throttle rules count a sending domain's recent recipients and its busiest hour.
    index('messages_domain_idx').on(t.domainId, t.receivedAt),
    // The reconciler re-enqueues queued messages that have no live job.
    index('messages_queued_idx').on(t.receivedAt).where(sql`state = 'queued'`),
    // The reconciler drops the bodies of messages done longer than the retention.
    index('messages_purgeable_idx').on(t.doneAt).where(sql`state = 'done' AND body_purged_at IS NULL`),
    check('messages_state_check', sql.raw(`state IN (${oneOf(MESSAGE_STATES)})`)),
    check('messages_category_check', sql`category ~ '^[a-z0-9-]{1,40}$'`),
    // The operator's category-mismatch view reads recent transactional mail alone.
    index('messages_body_hash_idx').on(t.receivedAt).where(sql`body_hash IS NOT NULL`),
  ],
)

/** Per-recipient delivery state of a spooled message. */
export const messageRecipients = pgTable(
  'message_recipients',
  {
    id: id(),
    messageId: uuid()
      .notNull()
      .references(() => messages.id, { onDelete: 'cascade' }),
    address: text().notNull(),
    /** Lower-case recipient domain, the key for MX lookup and shaping. */
    domain: text().notNull(),
    state: text({ enum: RECIPIENT_STATES }).notNull().default('queued'),
    attempts: integer().notNull().default(0),
    nextAttemptAt: at(),
    lastReply: text(),
    updatedAt: createdAt(),
  },
  (t) => [
    index('message_recipients_message_idx').on(t.messageId),
    index('message_recipients_pending_idx').on(t.nextAttemptAt).where(sql`state IN ('queued', 'deferred')`),
    check('message_recipients_state_check', sql.raw(`state IN (${oneOf(RECIPIENT_STATES)})`)),
  ],
)

export const ATTEMPT_OUTCOMES = ['delivered', 'deferred', 'failed'] as const

/** Every delivery attempt: when, to which MX, and what it answered. */
export const deliveryAttempts = pgTable(
  'delivery_attempts',
  {
    id: id(),
    recipientId: ref()
      .notNull()
      .references(() => messageRecipients.id, { onDelete: 'cascade' }),
    messageId: uuid().notNull(),
    startedAt: createdAt(),
    durationMs: integer(),
    mxHost: text(),
    mxAddress: text(),
    replyCode: integer(),
    enhancedStatus: text(),
    reply: text(),
    outcome: text({ enum: ATTEMPT_OUTCOMES }).notNull(),
    /**
     * The TLS the attempt used, null when it never reached the point of deciding:
     * `{ policy: 'opportunistic' | 'mta-sts' | 'dane', mode?: 'enforce' | 'testing' (MTA-STS),
     * requireTls?: true (the message asked for REQUIRETLS), tlsRequiredNo?: true (its
     * `TLS-Required: No` waived the policy), version?: 'TLSv1.3', cipher?, verified: boolean,
     * failure?: what fell short of the policy }`, version absent when the session stayed in
     * plain text or never opened (the policy refused every host).
     */
    tls: jsonb(),
  },
  (t) => [
    index('delivery_attempts_recipient_idx').on(t.recipientId, t.startedAt),
    index('delivery_attempts_message_idx').on(t.messageId),
    // The operator console's pool figures and per-site rates read a time range of the pool's attempts.
    index('delivery_attempts_started_idx').on(t.startedAt),
    check('delivery_attempts_outcome_check', sql.raw(`outcome IN (${oneOf(ATTEMPT_OUTCOMES)})`)),
  ],
)

/**
 * Recipients accepted per domain per UTC day: each domain's warming cap counts here with an
 * atomic conditional update, so parallel submissions on any replica never pass the cap.
 */
export const sendVolume = pgTable(
  'send_volume',
  {
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    domainId: ref()
      .notNull()
      .references(() => domains.id, { onDelete: 'cascade' }),
    day: date({ mode: 'string' }).notNull(),
    recipients: integer().notNull().default(0),
    messages: integer().notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.domainId, t.day] }), index('send_volume_member_idx').on(t.memberId, t.day)],
)
