import { type Db, oauthSessions, oauthStates } from '@atmos/db'
import type { Keyring } from '@atmos/secrets'
import type {
  NodeSavedSession,
  NodeSavedSessionStore,
  NodeSavedState,
  NodeSavedStateStore,
} from '@atproto/oauth-client-node'
import { eq, lt } from 'drizzle-orm'

/**
 * A sign-in in flight is abandoned after this long: the PDS's own authorization request
 * lives minutes, and a state older than that could only be replayed.
 */
const STATE_TTL_MS = 30 * 60_000

// The library's stores, in Postgres and sealed (they hold DPoP private keys and tokens), so
// that any replica can finish a sign-in another began and a restart loses none. The sealing
// context names the row, so a sealed value copied to another key does not open.

export function stateStore(db: Db, keyring: Keyring): NodeSavedStateStore {
  const context = (key: string) => `oauth-state:${key}`
  return {
    async get(key) {
      const [row] = await db.select().from(oauthStates).where(eq(oauthStates.key, key))
      if (!row || row.expiresAt.getTime() < Date.now()) return undefined
      return JSON.parse(keyring.unseal(row.kekId, row.valueSealed, context(key)).toString('utf8')) as NodeSavedState
    },
    async set(key, value) {
      const { kekId, sealed } = keyring.seal(JSON.stringify(value), context(key))
      const expiresAt = new Date(Date.now() + STATE_TTL_MS)
      // Abandoned sign-ins go as new ones start: no sweeper needed.
      await db.delete(oauthStates).where(lt(oauthStates.expiresAt, new Date()))
      await db
        .insert(oauthStates)
        .values({ key, valueSealed: sealed, kekId, expiresAt })
        .onConflictDoUpdate({ target: oauthStates.key, set: { valueSealed: sealed, kekId, expiresAt } })
    },
    async del(key) {
      await db.delete(oauthStates).where(eq(oauthStates.key, key))
    },
  }
}

export function sessionStore(db: Db, keyring: Keyring): NodeSavedSessionStore {
  const context = (sub: string) => `oauth-session:${sub}`
  return {
    async get(sub) {
      const [row] = await db.select().from(oauthSessions).where(eq(oauthSessions.sub, sub))
      if (!row) return undefined
      return JSON.parse(keyring.unseal(row.kekId, row.valueSealed, context(sub)).toString('utf8')) as NodeSavedSession
    },
    async set(sub, value) {
      const { kekId, sealed } = keyring.seal(JSON.stringify(value), context(sub))
      await db
        .insert(oauthSessions)
        .values({ sub, valueSealed: sealed, kekId })
        .onConflictDoUpdate({ target: oauthSessions.sub, set: { valueSealed: sealed, kekId, updatedAt: new Date() } })
    },
    async del(sub) {
      await db.delete(oauthSessions).where(eq(oauthSessions.sub, sub))
    },
  }
}
