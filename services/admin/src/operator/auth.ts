import { createHash, timingSafeEqual } from 'node:crypto'
import type { MiddlewareHandler } from 'hono'

/**
 * Operator access by a bearer token read from a secret file. The pool's operators are few
 * and run the stack; members sign in with atproto OAuth instead (the enrollment wizard).
 * Tokens are compared as SHA-256 digests in constant time, so neither their length nor
 * their bytes leak through timing.
 */
export function operatorAuth(token: string): MiddlewareHandler {
  const want = createHash('sha256').update(token).digest()
  return async (c, next) => {
    const header = c.req.header('authorization') ?? ''
    const m = /^Bearer[ ]+(\S+)$/i.exec(header)
    const got = createHash('sha256')
      .update(m?.[1] ?? '')
      .digest()
    if (!m || !timingSafeEqual(got, want)) {
      c.header('WWW-Authenticate', 'Bearer realm="atmos-operator"')
      return c.json({ error: 'Unauthorized', message: 'an operator bearer token is required' }, 401)
    }
    await next()
  }
}
