import { createHash } from 'node:crypto'
import type { Db } from '@atmos/db'
import type { Logger } from '@atmos/runtime'
import { type NodeOAuthClient, OAuthCallbackError, OAuthResolverError } from '@atproto/oauth-client-node'
import { getConnInfo } from '@hono/node-server/conninfo'
import { type Context, Hono } from 'hono'
import { deleteCookie, getCookie } from 'hono/cookie'
import { OAUTH_SCOPE } from '../oauth/client.ts'
import { PRE_COOKIE, preToken } from './csrf.ts'
import { csrfField, errorPage, html, layout } from './layout.ts'
import type { WindowLimiter } from './rate-limit.ts'
import { type ClientInfo, revokeSessions, type SessionOptions, type SessionVars, startSession } from './session.ts'

// Signing in with atproto: the member names its account (handle, DID or PDS URL), signs in
// and consents on its own PDS's pages, and comes back to /oauth/callback, where our session
// starts. Every failure a member can act on is a page saying what to do.

type Env = { Variables: SessionVars }

/** A handle, a DID or an http(s) URL of a PDS; anything else is refused before any lookup. */
const HANDLE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/
const DID = /^did:(plc:[a-z2-7]{24}|web:[a-z0-9.%:-]{1,253})$/

export function parseIdentifier(raw: string): string | undefined {
  const v = raw.trim().replace(/^@/, '')
  if (!v || v.length > 2048) return undefined
  if (DID.test(v)) return v
  if (/^https?:\/\//i.test(v)) return URL.canParse(v) ? new URL(v).origin : undefined
  const handle = v.toLowerCase()
  return HANDLE.test(handle) ? handle : undefined
}

export function clientInfo(c: Context): ClientInfo {
  let ip: string | null = null
  try {
    ip = getConnInfo(c).remote.address ?? null
  } catch {
    // Not served by @hono/node-server (app.request in a unit test): no address.
  }
  return { ip, userAgent: c.req.header('user-agent') ?? null }
}

/** The OAuth `state` carries a hash of the browser's pre-sign-in token: the callback must come back to that browser. */
const bindingFor = (pre: string) => createHash('sha256').update(`signin\0${pre}`).digest('base64url')

function signinPage(pre: string, value = '', problem?: string) {
  const describedBy = problem ? 'identifier-help identifier-error' : 'identifier-help'
  return layout({
    title: 'Sign in',
    body: html`<h1>Sign in to Atmosphere Mail</h1>
      <p>Sign in with your atproto account: you will confirm on your own PDS, and we never see your password.</p>
      <form method="post" action="/signin">
        ${csrfField(pre)}
        <label for="identifier">Handle, DID or PDS address</label>
        <input id="identifier" name="identifier" type="text" autocomplete="username" required
          value="${value}" aria-describedby="${describedBy}" aria-invalid="${problem ? 'true' : 'false'}" />
        <p id="identifier-help" class="help">For example alice.example.com, did:plc:…, or https://pds.example.com</p>
        ${problem ? html`<p id="identifier-error" class="error" role="alert">${problem}</p>` : ''}
        <button type="submit">Sign in</button>
      </form>`,
  })
}

export function signinRoutes(opts: {
  db: Db
  logger: Logger
  oauth: NodeOAuthClient
  sessions: SessionOptions
  limiter: WindowLimiter
}): Hono<Env> {
  const { db, logger, oauth, sessions, limiter } = opts
  const app = new Hono<Env>()

  app.get('/', (c) => {
    if (c.get('session')) return c.redirect('/account', 303)
    return c.html(signinPage(preToken(c, sessions.secure)))
  })

  app.post('/signin', async (c) => {
    const client = clientInfo(c)
    const wait = limiter.take(client.ip ?? 'unknown')
    if (wait) {
      return errorPage(
        429,
        'Too many sign-in attempts',
        `Too many sign-ins from your address; try again in ${wait} seconds.`,
        null,
        { 'Retry-After': String(wait) },
      )
    }
    const body = await c.req.parseBody()
    const raw = typeof body.identifier === 'string' ? body.identifier : ''
    const input = parseIdentifier(raw)
    const pre = getCookie(c, PRE_COOKIE) ?? preToken(c, sessions.secure)
    if (!input) {
      return c.html(
        signinPage(
          pre,
          raw.slice(0, 256),
          'Enter a handle (alice.example.com), a DID (did:plc:…) or the address of your PDS.',
        ),
        400,
      )
    }
    try {
      const url = await oauth.authorize(input, { scope: OAUTH_SCOPE, state: bindingFor(pre) })
      return c.redirect(url.href, 303)
    } catch (err) {
      logger.info({ err: (err as Error).message, input }, 'sign-in could not start')
      const msg = err instanceof OAuthResolverError ? err.message : ''
      if (msg.startsWith('Failed to resolve identity')) {
        return c.html(
          signinPage(
            pre,
            raw.slice(0, 256),
            `We could not find the account ${input}. Check the spelling, or enter your DID.`,
          ),
          400,
        )
      }
      return errorPage(
        502,
        'Your PDS did not answer',
        `We found ${input} but could not reach its PDS to sign in. Try again in a minute; if it persists, tell your PDS's operator.`,
      )
    }
  })

  app.get('/oauth/callback', async (c) => {
    const params = new URLSearchParams(c.req.query())
    const pre = getCookie(c, PRE_COOKIE)
    let did: string
    let appState: string | null
    try {
      const result = await oauth.callback(params)
      did = result.session.did
      appState = result.state
    } catch (err) {
      const error = params.get('error')
      if (error === 'access_denied') {
        return errorPage(
          403,
          'Sign-in cancelled',
          'You declined to authorise Atmosphere Mail on your PDS, so you are not signed in. Sign in again to continue.',
        )
      }
      const unknown =
        err instanceof OAuthCallbackError && /Unknown authorization session|Missing "state"/.test(err.message)
      if (unknown) {
        return errorPage(
          400,
          'Sign-in expired',
          'This sign-in expired or was already used. Start again from the sign-in page.',
        )
      }
      logger.warn({ err: (err as Error).message, error }, 'sign-in callback failed')
      return errorPage(
        502,
        'Sign-in failed',
        'Your PDS did not complete the sign-in. Start again; if it persists, tell your PDS’s operator.',
      )
    }
    if (!pre || appState !== bindingFor(pre)) {
      // A callback that this browser did not start (a link someone sent): signing in here
      // would sign the victim into the sender's account.
      return errorPage(
        400,
        'Sign-in expired',
        'This sign-in was started in another browser or has expired. Start again here.',
      )
    }
    deleteCookie(c, PRE_COOKIE, { path: '/', secure: sessions.secure })
    await startSession(c, db, sessions, did, clientInfo(c), c.get('session')?.idHash)
    return c.redirect('/account', 303)
  })

  app.post('/signout', async (c) => {
    const session = c.get('session')
    if (session) await revokeSessions(c, db, sessions, session, 'this', clientInfo(c))
    return c.redirect('/', 303)
  })

  app.post('/signout-everywhere', async (c) => {
    const session = c.get('session')
    if (!session) return c.redirect('/', 303)
    await revokeSessions(c, db, sessions, session, 'everywhere', clientInfo(c))
    // The tokens at the PDS go too; a failure there leaves them to expire on their own.
    await oauth.revoke(session.did).catch((err: Error) => logger.warn({ err: err.message }, 'oauth revoke failed'))
    return c.redirect('/', 303)
  })

  return app
}
