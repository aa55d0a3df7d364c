import { sql } from 'drizzle-orm'
import { check, index, pgTable, text, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { at, createdAt, id, oneOf, ref } from './columns.ts'
import { inboundMessages } from './feedback.ts'
import { domains, members } from './members.ts'

/**
 * `forwarded`: spooled to the relay (its delivery state is the relay message's); `refused`:
 * not forwarded, `reason` says why (forward-to suppressed, a loop, the domain's rate); `bounced`:
 * a DSN came back to the forward's SRS address (recorded only: nothing is ever sent on).
 */
export const FORWARD_STATES = ['forwarded', 'refused', 'bounced'] as const
export type ForwardState = (typeof FORWARD_STATES)[number]

/**
 * Mail to a member's enrolled domain, forwarded by fbl-ingest to the domain's forward-to
 * address: one row per inbound message and domain, written in the transaction that spools
 * the forward (or records why not), so a retried job forwards nothing twice.
 */
export const inboundForwards = pgTable(
  'inbound_forwards',
  {
    id: id(),
    inboundId: ref()
      .notNull()
      .references(() => inboundMessages.id, { onDelete: 'cascade' }),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    domainId: ref()
      .notNull()
      .references(() => domains.id, { onDelete: 'cascade' }),
    /** The first envelope recipient at the domain (lower-case). */
    recipient: text().notNull(),
    /** The domain's forward-to address when the forward was made. */
    forwardTo: text().notNull(),
    state: text({ enum: FORWARD_STATES }).notNull(),
    /** Why it was refused, or what the bounce said. */
    reason: text(),
    /** The relay message that carries it (member_id null: the pool's own mail); null when refused. */
    messageId: uuid(),
    /** MAIL FROM of the forward: the SRS address, or '' for the null sender. */
    returnPath: text().notNull().default(''),
    createdAt: createdAt(),
    bouncedAt: at(),
    /** The inbound DSN that reported the bounce. */
    bounceInboundId: ref().references(() => inboundMessages.id, { onDelete: 'set null' }),
  },
  (t) => [
    uniqueIndex('inbound_forwards_inbound_domain_key').on(t.inboundId, t.domainId),
    // The per-domain rate limit and the account's recent forwards.
    index('inbound_forwards_domain_idx').on(t.domainId, t.createdAt),
    // A DSN to an SRS address finds the forward it is about.
    index('inbound_forwards_return_path_idx').on(t.returnPath, t.createdAt).where(sql`return_path <> ''`),
    check('inbound_forwards_state_check', sql.raw(`state IN (${oneOf(FORWARD_STATES)})`)),
  ],
)
