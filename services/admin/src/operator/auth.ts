import { createHash, timingSafeEqual } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'
import type { SessionVars } from '../web/session.ts'

/**
 * Operator access by a bearer token read from a secret file (scripts, the CLI), or by an
 * atproto sign-in of a DID in `admin.operators` (the browser; the CSRF check guards its
 * mutations). Tokens are compared as SHA-256 digests in constant time, so neither their
 * length nor their bytes leak through timing. No token configured: sessions only.
 */
export function operatorAuth(token: string | undefined): MiddlewareHandler<{ Variables: SessionVars }> {
  const want = token ? createHash('sha256').update(token).digest() : undefined
  return async (c, next) => {
    const header = c.req.header('authorization')
    const session = c.get('session')
    if (!header && session) {
      if (session.operator) return next()
      return c.json({ error: 'Forbidden', message: `${session.did} is not an operator` }, 403)
    }
    const m = /^Bearer[ ]+(\S+)$/i.exec(header ?? '')
    const got = createHash('sha256')
      .update(m?.[1] ?? '')
      .digest()
    if (!m || !want || !timingSafeEqual(got, want)) {
      c.header('WWW-Authenticate', 'Bearer realm="atmos-operator"')
      return c.json(
        { error: 'Unauthorized', message: 'an operator bearer token or an operator sign-in is required' },
        401,
      )
    }
    await next()
  }
}
