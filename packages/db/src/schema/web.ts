import { index, pgTable, text } from 'drizzle-orm/pg-core'
import { at, createdAt } from './columns.ts'

/**
 * The admin's own sign-in sessions (the cookie), apart from the atproto OAuth session that
 * stands behind them: a DID may be signed in from several browsers, and "sign out
 * everywhere" revokes every one of them. Only a SHA-256 of the cookie's random id is kept,
 * so a copy of the table opens no session.
 */
export const webSessions = pgTable(
  'web_sessions',
  {
    idHash: text().primaryKey(),
    did: text().notNull(),
    createdAt: createdAt(),
    expiresAt: at().notNull(),
    revokedAt: at(),
    lastSeenAt: at(),
    ip: text(),
    userAgent: text(),
  },
  (t) => [index('web_sessions_did_idx').on(t.did), index('web_sessions_expires_idx').on(t.expiresAt)],
)
