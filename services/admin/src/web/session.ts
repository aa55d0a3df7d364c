import { createHash, randomBytes } from 'node:crypto'
import { auditLog, type Db, webSessions } from '@atmos/db'
import { and, eq, gt, isNull, lt } from 'drizzle-orm'
import type { Context, MiddlewareHandler } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'

// Our own sign-in session: a random id (256 bits) in an HttpOnly, SameSite=Lax cookie,
// Secure unless the admin is served over loopback http. Only its SHA-256 is stored, so a
// copy of the table opens nothing. A new id at every sign-in (no fixation); revocable one
// at a time or all of a DID's at once.

export const SESSION_COOKIE = 'atmos_session'

export type WebSession = { idHash: string; did: string; csrf: string; operator: boolean; expiresAt: Date }

export type SessionVars = { session: WebSession | null }

export type SessionOptions = { ttlMs: number; secure: boolean; operators: ReadonlySet<string> }

const hash = (id: string) => createHash('sha256').update(id).digest('base64url')

/**
 * The session's CSRF token: derived from the secret id (a different hash), so it needs no
 * storage, differs per session and reveals nothing about the cookie.
 */
export const csrfTokenFor = (id: string) => createHash('sha256').update(`csrf\0${id}`).digest('base64url')

export type ClientInfo = { ip: string | null; userAgent: string | null }

const KEEP_DEAD_MS = 30 * 86_400_000

/** Starts a session for the DID and sets its cookie; returns the new id's hash. */
export async function startSession(
  c: Context,
  db: Db,
  opts: SessionOptions,
  did: string,
  client: ClientInfo,
  replacing?: string,
): Promise<string> {
  const id = randomBytes(32).toString('base64url')
  const now = new Date()
  const expiresAt = new Date(now.getTime() + opts.ttlMs)
  await db.transaction(async (tx) => {
    // A browser signing in again (perhaps as another DID) leaves no live session behind.
    if (replacing) {
      await tx
        .update(webSessions)
        .set({ revokedAt: now })
        .where(and(eq(webSessions.idHash, replacing), isNull(webSessions.revokedAt)))
    }
    // Rows long dead go as new ones come: no sweeper needed; a month keeps them for questions.
    await tx.delete(webSessions).where(lt(webSessions.expiresAt, new Date(now.getTime() - KEEP_DEAD_MS)))
    await tx.insert(webSessions).values({
      idHash: hash(id),
      did,
      createdAt: now,
      expiresAt,
      lastSeenAt: now,
      ip: client.ip,
      userAgent: client.userAgent?.slice(0, 512) ?? null,
    })
    await tx.insert(auditLog).values({ actor: `admin:${did}`, action: 'web.signin', did, detail: { ip: client.ip } })
  })
  setCookie(c, SESSION_COOKIE, id, sessionCookieOptions(opts, Math.floor(opts.ttlMs / 1000)))
  return hash(id)
}

export function sessionCookieOptions(opts: { secure: boolean }, maxAge: number) {
  return { httpOnly: true, sameSite: 'Lax' as const, secure: opts.secure, path: '/', maxAge }
}

/** Reads the cookie into `session` (null when absent, unknown, expired or revoked). */
export function sessionMiddleware(db: Db, opts: SessionOptions): MiddlewareHandler<{ Variables: SessionVars }> {
  return async (c, next) => {
    c.set('session', await findSession(c, db, opts))
    await next()
  }
}

/** How often last_seen_at is written: every request would be a write per page view. */
const SEEN_EVERY_MS = 60_000

async function findSession(c: Context, db: Db, opts: SessionOptions): Promise<WebSession | null> {
  const id = getCookie(c, SESSION_COOKIE)
  if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return null
  const now = new Date()
  const [row] = await db
    .select()
    .from(webSessions)
    .where(and(eq(webSessions.idHash, hash(id)), isNull(webSessions.revokedAt), gt(webSessions.expiresAt, now)))
  if (!row) {
    // A dead cookie is dropped, so the browser stops sending it.
    deleteCookie(c, SESSION_COOKIE, { path: '/', secure: opts.secure })
    return null
  }
  if (!row.lastSeenAt || now.getTime() - row.lastSeenAt.getTime() > SEEN_EVERY_MS) {
    await db.update(webSessions).set({ lastSeenAt: now }).where(eq(webSessions.idHash, row.idHash))
  }
  return {
    idHash: row.idHash,
    did: row.did,
    csrf: csrfTokenFor(id),
    operator: opts.operators.has(row.did),
    expiresAt: row.expiresAt,
  }
}

/** Revokes this session (sign out) or every live session of its DID (sign out everywhere); returns how many. */
export async function revokeSessions(
  c: Context,
  db: Db,
  opts: SessionOptions,
  session: WebSession,
  scope: 'this' | 'everywhere',
  client: ClientInfo,
): Promise<number> {
  const n = await db.transaction(async (tx) => {
    const where =
      scope === 'this'
        ? eq(webSessions.idHash, session.idHash)
        : and(eq(webSessions.did, session.did), isNull(webSessions.revokedAt))
    const rows = await tx
      .update(webSessions)
      .set({ revokedAt: new Date() })
      .where(and(where, isNull(webSessions.revokedAt)))
      .returning({ idHash: webSessions.idHash })
    await tx.insert(auditLog).values({
      actor: `admin:${session.did}`,
      action: scope === 'this' ? 'web.signout' : 'web.signout_everywhere',
      did: session.did,
      detail: { ip: client.ip, sessions: rows.length },
    })
    return rows.length
  })
  deleteCookie(c, SESSION_COOKIE, { path: '/', secure: opts.secure })
  return n
}
