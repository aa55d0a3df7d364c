import type { Db } from '@atmos/db'
import { dummyPasswordHash, verifyPassword } from '@atmos/secrets'
import { sql } from 'drizzle-orm'
import type { MiddlewareHandler } from 'hono'
import type { SessionVars } from '../web/session.ts'

/**
 * Who signed in: the member (the account, by DID) and the credential used. A credential is
 * scoped to one of the member's domains, or (null) to all of them; either way the data it
 * opens is the member's, over all its domains.
 */
export type MemberIdentity = { id: number; did: string; username: string | null; domain: string | null }

/**
 * Member access to its own data with its relay credential (HTTP Basic: the SMTP username
 * and password), the way mail APIs take an API key, or with the dashboard's atproto sign-in
 * (the session cookie; the CSRF check guards its mutations). A session opens the member
 * whose DID signed in, with no credential (`username` null). The passwords are 192 random bits we generated, so guessing is hopeless; what
 * needs bounding is the scrypt work a stranger can make us do: at most `maxChecks` run at
 * once, and past that the answer is 429. An unknown user costs one scrypt like a wrong
 * password, so names cannot be probed. Serve this endpoint behind TLS only.
 */
export function memberAuth(
  db: Db,
  opts: { maxChecks: number },
): MiddlewareHandler<{ Variables: { member: MemberIdentity } & SessionVars }> {
  let running = 0
  return async (c, next) => {
    const session = c.get('session')
    if (session && !c.req.header('authorization')) {
      const rows = await db.execute<{ id: string }>(sql`select id::text from members where did = ${session.did}`)
      if (!rows[0]) {
        return c.json({ error: 'Forbidden', message: `${session.did} is not a member yet; enrol a domain first` }, 403)
      }
      c.set('member', { id: Number(rows[0].id), did: session.did, username: null, domain: null })
      return next()
    }
    const m = /^Basic[ ]+([A-Za-z0-9+/=]+)$/i.exec(c.req.header('authorization') ?? '')
    const decoded = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : ''
    const colon = decoded.indexOf(':')
    if (!m || colon < 1) return unauthorized(c)
    if (running >= opts.maxChecks) {
      c.header('Retry-After', '1')
      return c.json({ error: 'TooManyRequests', message: 'too many sign-ins at once; retry shortly' }, 429)
    }
    running++
    let member: MemberIdentity | null
    try {
      member = await checkCredential(db, decoded.slice(0, colon), decoded.slice(colon + 1))
    } finally {
      running--
    }
    if (!member) return unauthorized(c)
    c.set('member', member)
    await next()
  }
}

function unauthorized(c: Parameters<MiddlewareHandler>[0]) {
  c.header('WWW-Authenticate', 'Basic realm="atmos-member", charset="UTF-8"')
  return c.json({ error: 'Unauthorized', message: 'the relay username and password of a member are required' }, 401)
}

async function checkCredential(db: Db, username: string, password: string): Promise<MemberIdentity | null> {
  const name = username.trim().toLowerCase()
  // A credential scoped to a domain the member gave up or that moved to another account is
  // dead with it (its removal revokes it too; this holds should one be missed).
  const rows = await db.execute<{ id: string; did: string; username: string; domain: string | null; hash: string }>(sql`
    select m.id::text, m.did, c.username, d.domain, c.password_hash as hash
    from smtp_credentials c join members m on m.id = c.member_id
    left join domains d on d.id = c.domain_id
    where c.username = ${name} and c.revoked_at is null and (c.domain_id is null or d.removed_at is null)`)
  const row = rows[0]
  const ok = await verifyPassword(password, row?.hash ?? (await dummyPasswordHash()))
  return ok && row ? { id: Number(row.id), did: row.did, username: row.username, domain: row.domain } : null
}
