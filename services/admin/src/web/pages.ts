import type { MiddlewareHandler } from 'hono'
import { errorPage, type PageSession } from './layout.ts'
import type { SessionVars, WebSession } from './session.ts'

type Env = { Variables: SessionVars }

/** Signed out: to the sign-in page. */
export const requireSignIn: MiddlewareHandler<Env> = async (c, next) => {
  if (!c.get('session')) return c.redirect('/', 303)
  await next()
}

/** /operator and below: signed out to sign-in, a member who is not an operator 403. */
export const requireOperator: MiddlewareHandler<Env> = async (c, next) => {
  const s = c.get('session')
  if (!s) return c.redirect('/', 303)
  if (!s.operator) {
    return errorPage(403, 'Operators only', `${s.did} is not one of this pool's operators.`, pageSession(s, null))
  }
  await next()
}

export function pageSession(s: WebSession, handle: string | null): PageSession {
  return { did: s.did, handle, csrf: s.csrf, operator: s.operator }
}
