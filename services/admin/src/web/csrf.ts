import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { Context, MiddlewareHandler } from 'hono'
import { getCookie, setCookie } from 'hono/cookie'
import { errorPage } from './layout.ts'
import type { SessionVars } from './session.ts'

// CSRF protection on every state-changing request (POST, PUT, PATCH, DELETE): the Origin
// (and Sec-Fetch-Site) must be ours when the browser sends them, and the request must carry the token of the
// session it rides on, in the `_csrf` form field or the `X-CSRF-Token` header. Before
// sign-in (the sign-in form itself) the token is a random cookie of its own, echoed by the
// form (double submit); it also ties the OAuth callback to the browser that started it.
// Requests with an Authorization header (the relay credential, the operator token) carry
// no ambient authority and are exempt; so is /api/ without a session (it answers 401), and
// the one-click unsubscribe page /u/, whose POST comes from mail providers (RFC 8058) and
// whose authority is the HMAC token in its path, never a cookie.

export const PRE_COOKIE = 'atmos_pre'

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/** The browser's pre-sign-in token, set when missing. */
export function preToken(c: Context, secure: boolean): string {
  const have = getCookie(c, PRE_COOKIE)
  if (have && /^[A-Za-z0-9_-]{43}$/.test(have)) return have
  const token = randomBytes(32).toString('base64url')
  // Lax: it must come back on the PDS's redirect to our callback (a top-level GET).
  setCookie(c, PRE_COOKIE, token, { httpOnly: true, sameSite: 'Lax', secure, path: '/', maxAge: 3600 })
  return token
}

/** Why a state-changing request is refused, or undefined when it may go on. */
export async function csrfProblem(c: Context<{ Variables: SessionVars }>, origin: string): Promise<string | undefined> {
  // With Referrer-Policy no-referrer, Chromium sends `Origin: null` on our own form posts;
  // Sec-Fetch-Site (which no page can forge) then tells same-origin from the rest.
  const site = c.req.header('sec-fetch-site')
  if (site && site !== 'same-origin' && site !== 'none') return `the request came from another site (${site})`
  const sent = c.req.header('origin')
  if (sent === 'null' && site !== 'same-origin') return 'the request came from an opaque origin'
  if (sent !== undefined && sent !== 'null' && sent !== origin)
    return `the request came from another site (${sent.slice(0, 100)})`
  const session = c.get('session')
  const want = session ? session.csrf : getCookie(c, PRE_COOKIE)
  if (!want) return 'the form expired; reload the page and try again'
  let got = c.req.header('x-csrf-token')
  if (!got && /^(application\/x-www-form-urlencoded|multipart\/form-data)/i.test(c.req.header('content-type') ?? '')) {
    const body = await c.req.parseBody()
    got = typeof body._csrf === 'string' ? body._csrf : undefined
  }
  if (!got) return 'the form token is missing; reload the page and try again'
  const a = Buffer.from(got)
  const b = Buffer.from(want)
  if (a.length !== b.length || !timingSafeEqual(a, b))
    return 'the form token does not match this session; reload the page'
  return undefined
}

export function csrfMiddleware(origin: string): MiddlewareHandler<{ Variables: SessionVars }> {
  return async (c, next) => {
    if (!UNSAFE.has(c.req.method) || c.req.header('authorization') || c.req.path.startsWith('/u/')) return next()
    const api = c.req.path.startsWith('/api/')
    if (api && !c.get('session')) return next()
    const problem = await csrfProblem(c, origin)
    if (!problem) return next()
    if (api) return c.json({ error: 'Forbidden', message: `CSRF check failed: ${problem}` }, 403)
    return errorPage(403, 'Request refused', `For your safety this request was refused: ${problem}.`, null)
  }
}
