import { sql } from 'drizzle-orm'
import { check, index, integer, jsonb, pgTable, primaryKey, smallint, text } from 'drizzle-orm/pg-core'
import { at, bytea, createdAt, id, oneOf, ref } from './columns.ts'
import { members } from './members.ts'

// Webhooks: a member's HTTPS endpoints, the outbox of events that happened to the member,
// and one delivery row per event and endpoint, which the webhooks service claims, sends
// (Standard Webhooks signatures) and retries. An event is written in the transaction of
// what it reports, so a delivery recorded is an event that will be sent.

/** The event types a member may subscribe to; `test` is sent only by the account's button. */
export const WEBHOOK_EVENT_TYPES = [
  'message.delivered',
  'message.deferred',
  'message.bounced',
  'message.complained',
  'recipient.unsubscribed',
  'member.suspended',
  'member.reinstated',
  'label.changed',
] as const
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number]

export const webhookEndpoints = pgTable(
  'webhook_endpoints',
  {
    id: id(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    url: text().notNull(),
    /** What the member chose to receive; never empty (the account refuses that). */
    events: text().array().notNull(),
    description: text().notNull().default(''),
    /** The signing secret's 32 bytes, sealed (AES-256-GCM) bound to `webhook:<id>`. */
    secretSealed: bytea().notNull(),
    kekId: text().notNull(),
    /** The secret before a rotation, still signing beside the new one until `previousSecretExpiresAt`. */
    previousSecretSealed: bytea(),
    previousKekId: text(),
    previousSecretExpiresAt: at(),
    /** Null while enabled. */
    disabledAt: at(),
    disabledReason: text(),
    /** Deliveries that ended failed in a row (a success resets it); with `failingSince`, what disables. */
    consecutiveFailures: integer().notNull().default(0),
    failingSince: at(),
    lastSuccessAt: at(),
    createdAt: createdAt(),
    updatedAt: createdAt(),
  },
  (t) => [
    index('webhook_endpoints_member_idx').on(t.memberId),
    check('webhook_endpoints_url_check', sql`url like 'http%' and length(url) <= 2048`),
  ],
)

export const webhookEvents = pgTable(
  'webhook_events',
  {
    /** The Standard Webhooks `webhook-id` (`msg_<26 base32>`), the same on every retry. */
    id: text().primaryKey(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    type: text().notNull(),
    /** The event's `data` object; the body sent is `{type, timestamp, data}`. */
    payload: jsonb().notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('webhook_events_member_idx').on(t.memberId, t.createdAt)],
)

export const WEBHOOK_DELIVERY_STATES = ['pending', 'delivered', 'failed'] as const

export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    eventId: text()
      .notNull()
      .references(() => webhookEvents.id, { onDelete: 'cascade' }),
    endpointId: ref()
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    /** pending (due at next_attempt_at), delivered, or failed (every attempt spent, or the endpoint disabled). */
    state: text().notNull().default('pending'),
    attempts: smallint().notNull().default(0),
    /** Due time while pending; while an attempt runs, the end of its lease. */
    nextAttemptAt: at().notNull().defaultNow(),
    lastStatus: integer(),
    lastError: text(),
    lastAttemptAt: at(),
    deliveredAt: at(),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ columns: [t.eventId, t.endpointId] }),
    // The dispatcher's claim: pending rows by due time, and nothing else in the index.
    index('webhook_deliveries_due_idx').on(t.nextAttemptAt).where(sql`state = 'pending'`),
    // The account's recent deliveries of one endpoint.
    index('webhook_deliveries_endpoint_idx').on(t.endpointId, t.createdAt),
    check('webhook_deliveries_state_check', sql.raw(`state IN (${oneOf(WEBHOOK_DELIVERY_STATES)})`)),
  ],
)
