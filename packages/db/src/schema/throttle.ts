import { sql } from 'drizzle-orm'
import { bigint, check, index, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core'
import { createdAt, id, oneOf, ref } from './columns.ts'
import { domains, members } from './members.ts'

/** The relay's throttle rules (packages/reputation/src/throttle-rules.ts decides them). */
export const THROTTLE_RULES = ['spike', 'spray'] as const
/** The modes in which a rule records: `off` decides nothing and records nothing. */
export const THROTTLE_RECORDED_MODES = ['shadow', 'enforce'] as const
/** `deferred`: the recipient got 451 4.7.1 (enforce); `would_defer`: accepted, recorded only (shadow). */
export const THROTTLE_ACTIONS = ['deferred', 'would_defer'] as const

/**
 * What the relay's throttle rules decided, with the figures that made them fire. Not one
 * row per deferred recipient: at most one per domain, rule and mode in each
 * `relay.throttle.recordInterval` (`bucket` numbers those intervals since the epoch, and
 * the unique index makes a second insert from any replica a no-op), so that a spray of
 * thousands of recipients writes one row, not thousands.
 */
export const throttleDecisions = pgTable(
  'throttle_decisions',
  {
    id: id(),
    at: createdAt(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    domainId: ref()
      .notNull()
      .references(() => domains.id, { onDelete: 'cascade' }),
    /** The domain's name when decided (what the member sent as, and what the 451 named). */
    domain: text().notNull(),
    rule: text({ enum: THROTTLE_RULES }).notNull(),
    mode: text({ enum: THROTTLE_RECORDED_MODES }).notNull(),
    action: text({ enum: THROTTLE_ACTIONS }).notNull(),
    /** The rule's evidence: its window's counts, the history and thresholds it was held to. */
    figures: jsonb().$type<Record<string, unknown>>().notNull(),
    /** floor(epoch ms / recordInterval ms) at `at`: the interval this row stands for. */
    bucket: bigint({ mode: 'number' }).notNull(),
  },
  (t) => [
    uniqueIndex('throttle_decisions_once_idx').on(t.domainId, t.rule, t.mode, t.bucket),
    index('throttle_decisions_at_idx').on(t.at),
    index('throttle_decisions_member_idx').on(t.memberId, t.at),
    check('throttle_decisions_rule_check', sql.raw(`rule IN (${oneOf(THROTTLE_RULES)})`)),
    check('throttle_decisions_mode_check', sql.raw(`mode IN (${oneOf(THROTTLE_RECORDED_MODES)})`)),
    check('throttle_decisions_action_check', sql.raw(`action IN (${oneOf(THROTTLE_ACTIONS)})`)),
  ],
)
