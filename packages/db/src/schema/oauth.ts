import { index, pgTable, text } from 'drizzle-orm/pg-core'
import { at, bytea, createdAt } from './columns.ts'

// Stores behind @atproto/oauth-client-node's stateStore and sessionStore, so that the
// admin can run as several replicas and survive restarts mid-login. Both values hold
// private DPoP keys and tokens, so they are sealed (AES-256-GCM) like DKIM keys.

export const oauthStates = pgTable(
  'oauth_states',
  {
    key: text().primaryKey(),
    valueSealed: bytea().notNull(),
    kekId: text().notNull(),
    createdAt: createdAt(),
    expiresAt: at().notNull(),
  },
  (t) => [index('oauth_states_expires_idx').on(t.expiresAt)],
)

export const oauthSessions = pgTable('oauth_sessions', {
  /** The signed-in account's DID. */
  sub: text().primaryKey(),
  valueSealed: bytea().notNull(),
  kekId: text().notNull(),
  updatedAt: createdAt(),
})
