import type { NodeOAuthClient } from '@atproto/oauth-client-node'
import { Hono, type MiddlewareHandler } from 'hono'
import { csrfField, errorPage, html, layout, type PageSession } from './layout.ts'
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

/** The handle the DID document claims, verified both ways by the resolver; null when it cannot be had now. */
async function handleOf(oauth: NodeOAuthClient, did: string): Promise<string | null> {
  try {
    const id = await oauth.identityResolver.resolve(did)
    return id.handle && id.handle !== 'handle.invalid' ? id.handle : null
  } catch {
    return null
  }
}

export function accountRoutes(oauth: NodeOAuthClient): Hono<Env> {
  const app = new Hono<Env>()
  app.use('/account', requireSignIn)
  app.get('/account', async (c) => {
    const s = c.get('session')!
    const handle = await handleOf(oauth, s.did)
    const session = pageSession(s, handle)
    const body = html`<h1>Your account</h1>
      <dl class="facts">
        <dt>DID</dt><dd><code data-testid="did">${s.did}</code></dd>
        <dt>Handle</dt><dd data-testid="handle">${handle ?? 'not verified'}</dd>
        <dt>Signed in until</dt><dd>${s.expiresAt.toISOString().replace('T', ' ').slice(0, 16)} UTC</dd>
      </dl>
      <h2>Mail domains</h2>
      <p><a href="/enroll">Enrol a mail domain</a></p>
      <h2>Sessions</h2>
      <form method="post" action="/signout-everywhere">
        ${csrfField(s.csrf)}
        <button type="submit" data-confirm="Sign out of every browser?">Sign out everywhere</button>
      </form>`
    return c.html(layout({ title: 'Your account', body, session }))
  })

  app.use('/operator', requireOperator)
  app.use('/operator/*', requireOperator)
  app.get('/operator', (c) => {
    const s = c.get('session')!
    const body = html`<h1>Operator</h1>
      <p>Signed in as operator <code>${s.did}</code>. The operator API answers under <code>/api/operator/</code> for this session.</p>`
    return c.html(layout({ title: 'Operator', body, session: pageSession(s, null) }))
  })
  return app
}
