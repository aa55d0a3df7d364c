import type { Db, Pool } from '@atmos/db'
import {
  type AttestationRecord,
  attestationRecord,
  cancelRotation,
  checkDomain,
  completeRotation,
  DomainError,
  issueApiKey,
  liveApiKey,
  type RotationState,
  rotationState,
  startRotation,
} from '@atmos/enrolment'
import type { Logger } from '@atmos/runtime'
import { type Keyring, loadKeyring } from '@atmos/secrets'
import type { DnsResolver } from '@atmos/verify'
import type { NodeOAuthClient } from '@atproto/oauth-client-node'
import { type Context, Hono } from 'hono'
import { CheckRateLimiter, type SeenRecord, seeRecord } from '../enroll/check.ts'
import type { EnrollConfig } from '../enroll/config.ts'
import { type DnsRecordToPublish, txtRecord } from '../enroll/records.ts'
import { apiKeyBlock, recordBlock, seenTable } from '../enroll/views.ts'
import { type Account, WizardError } from '../enroll/wizard.ts'
import { publishAttestation, wizardResolver } from './enroll.ts'
import { csrfField, type ErrorStatus, errorPage, type Html, html, layout, raw } from './layout.ts'
import { pageSession, requireSignIn } from './pages.ts'
import type { SessionVars, WebSession } from './session.ts'
import { clientInfo } from './signin.ts'

// A member's keys for one of their domains, from the account: the API key (rotate, shown
// once) and DKIM key rotation. A rotation issues a new pair pending (it signs nothing), shows
// its records exactly as the wizard's step 3 does, checks them in DNS with the wizard's
// resolver, and on "switch" writes the attestation naming the new selectors through the
// member's OAuth session and only then makes the new pair active (the old one retired). The
// relay signs with the active pair within its key cache's minute; the old records stay until
// mail signed with them cannot be in flight any more (admin.enroll.oldKeyRetention).

type Env = { Variables: SessionVars }

export type KeysDeps = {
  sql: Pool
  /** The relay's members' KEK (new DKIM keys are sealed under it); undefined turns rotation off. */
  keyring: Keyring | undefined
  dns: DnsResolver
  config: Pick<EnrollConfig, 'spfInclude' | 'checkTimeout' | 'oldKeyRetention'>
  /** Bounds the DNS checks a DID may start (the wizard's check-now limit). */
  limiter: CheckRateLimiter
  /** Writes the attestation record to the account's own repository; returns its URI. */
  publish: (account: Account, record: AttestationRecord) => Promise<string>
  logger?: Logger | undefined
}

class KeysError extends Error {
  readonly status: ErrorStatus
  readonly headers: Record<string, string>
  constructor(status: ErrorStatus, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.headers = headers
  }
}

const notYours = (domain: string) =>
  new KeysError(404, `${domain.slice(0, 260)} is not one of your mail domains. Your domains are on your account page.`)

const when = (d: Date | null | undefined) => (d ? `${d.toISOString().replace('T', ' ').slice(0, 16)} UTC` : 'never')

export function keysRoutes(deps: KeysDeps): Hono<Env> {
  const app = new Hono<Env>()
  app.use('/account/domains/*', requireSignIn)

  const session = (c: Context<Env>) => c.get('session') as WebSession
  const page = (c: Context<Env>, title: string, body: Html, status: 200 | 409 = 200) =>
    c.html(layout({ title, body, session: pageSession(session(c), null) }), status)
  const audit = (c: Context<Env>) => ({ ip: clientInfo(c).ip })

  /** The :domain of the path when the signed-in DID holds it now; 404 for anything else. */
  const held = async (c: Context<Env>) => {
    const given = c.req.param('domain') ?? ''
    let domain: string
    try {
      domain = checkDomain(given.slice(0, 300))
    } catch {
      throw notYours(given)
    }
    try {
      return await rotationState(deps.sql, session(c).did, domain)
    } catch (err) {
      if (err instanceof DomainError) throw notYours(domain)
      throw err
    }
  }
  const needKeyring = () => {
    if (!deps.keyring) {
      throw new KeysError(503, 'DKIM key rotation is not available: the operator has not set up the key file yet.')
    }
    return deps.keyring
  }

  app.onError((err, c) => {
    const s = c.get('session')
    const ps = s ? pageSession(s, null) : null
    if (err instanceof KeysError) return errorPage(err.status, title(err.status), err.message, ps, err.headers)
    if (err instanceof WizardError) return errorPage(err.status, title(err.status), err.message, ps)
    if (err instanceof DomainError) return errorPage(409, 'Not possible now', err.message, ps)
    throw err
  })

  // ---- API key ----

  app.get('/account/domains/:domain/api-key', async (c) => {
    const state = await held(c)
    const live = await liveApiKey(deps.sql, session(c).did, state.domain)
    const path = `/account/domains/${encodeURIComponent(state.domain)}/api-key`
    const body = html`<h1>API key for ${state.domain}</h1>
      ${
        live
          ? html`<dl class="facts">
              <dt>Key</dt><dd><code>atmos_${live.keyId}_…</code> (the secret part was shown once, when it was issued)</dd>
              <dt>Issued</dt><dd>${when(live.createdAt)}</dd>
              <dt>Last used</dt><dd>${when(live.lastUsedAt)}</dd>
            </dl>`
          : html`<p>${state.domain} has no API key.</p>`
      }
      ${
        state.domainStatus === 'pending'
          ? html`<p>An API key is issued once the domain is verified and active: finish
              <a href="/enroll/${encodeURIComponent(state.domain)}">its enrolment</a> first.</p>`
          : html`<p>A new key is shown once. ${live ? 'The current key stops working at once.' : ''}</p>
              <form method="post" action="${path}">
                ${csrfField(session(c).csrf)}
                <button type="submit" ${live ? raw(`data-confirm="Replace the API key of ${escAttr(state.domain)}? The current key stops working at once."`) : ''}>
                  ${live ? 'Replace the API key' : 'Issue an API key'}
                </button>
              </form>`
      }
      <p><a href="/account">Back to your account</a></p>`
    return page(c, `API key for ${state.domain}`, body)
  })

  app.post('/account/domains/:domain/api-key', async (c) => {
    const state = await held(c)
    const issued = await issueApiKey(deps.sql, { did: session(c).did, domain: state.domain, detail: audit(c) })
    c.header('Cache-Control', 'no-store')
    const body = html`<h1>New API key for ${state.domain}</h1>
      <p role="alert">The key is shown only now; only a hash of it is stored.
        ${issued.revokedKeyId ? html`The previous key (<code>atmos_${issued.revokedKeyId}_…</code>) no longer works.` : ''}</p>
      ${raw(apiKeyBlock(issued.key))}
      <p><a href="/account/domains/${encodeURIComponent(state.domain)}/api-key">Done</a></p>`
    return page(c, `New API key for ${state.domain}`, body)
  })

  // ---- DKIM key rotation ----

  const base = (state: RotationState) => `/account/domains/${encodeURIComponent(state.domain)}/keys`
  const newRecords = (state: RotationState): DnsRecordToPublish[] =>
    (state.pending ?? []).map((k) =>
      txtRecord(
        'dkim',
        k.txtName,
        k.txt,
        k.algorithm === 'ed25519-sha256'
          ? 'The new Ed25519 DKIM key: publish it beside the current one (do not replace it yet).'
          : 'The new RSA DKIM key: publish it beside the current one (do not replace it yet).',
      ),
    )
  const form = (c: Context<Env>, action: string, label: string, confirm?: string) =>
    html`<form method="post" action="${action}">
      ${csrfField(session(c).csrf)}
      <button type="submit" ${confirm ? raw(`data-confirm="${escAttr(confirm)}"`) : ''}>${label}</button>
    </form>`

  /** Every new record as DNS has it now; throws 429 when the DID ran checks too often. */
  const look = async (c: Context<Env>, state: RotationState): Promise<SeenRecord[]> => {
    const taken = deps.limiter.take(session(c).did)
    if (!taken.ok) {
      const s = Math.ceil(taken.retryAfterMs / 1000)
      throw new KeysError(429, `You ran the checks often just now: try again in ${s} s.`, { 'Retry-After': String(s) })
    }
    return Promise.all(newRecords(state).map((r) => seeRecord(r, deps.dns, deps.config.spfInclude)))
  }

  app.get('/account/domains/:domain/keys', async (c) => {
    const state = await held(c)
    const retireAfter = state.lastRotatedAt && new Date(state.lastRotatedAt.getTime() + deps.config.oldKeyRetention)
    const body = html`<h1>DKIM keys of ${state.domain}</h1>
      <h2>Signing now</h2>
      <ul>
        ${state.active.map((k) => html`<li><code>${k.txtName}</code> (${k.algorithm})</li>`)}
      </ul>
      ${
        state.lastRetired.length && retireAfter
          ? html`<p>Retired at the last rotation (${when(state.lastRotatedAt)}):
              ${state.lastRetired.map((s) => html`<code>${s}._domainkey.${state.domain}</code> `)}.
              ${
                retireAfter.getTime() > Date.now()
                  ? html`Keep their records in DNS until ${when(retireAfter)}: mail signed with them may still be on its way.`
                  : html`Their records can be removed from DNS now.`
              }</p>`
          : ''
      }
      ${state.pending ? rotationBody(c, state) : startBody(c, state)}
      <p><a href="/account">Back to your account</a></p>`
    return page(c, `DKIM keys of ${state.domain}`, body)
  })

  const startBody = (c: Context<Env>, state: RotationState) =>
    state.domainStatus === 'pending'
      ? html`<p>Keys are rotated once the domain is verified and active.</p>`
      : html`<h2>Rotate the keys</h2>
          <p>A rotation issues a new pair of keys. Nothing changes for your mail until you have published their records
            and switched: the current keys sign until then, and their records stay published for a while after.</p>
          ${form(c, `${base(state)}/start`, 'Start a key rotation')}`

  const rotationBody = (c: Context<Env>, state: RotationState) =>
    html`<h2>Rotation under way (started ${when(state.startedAt)})</h2>
      <p>1. Publish these two records beside the current ones. 2. Check that DNS serves them. 3. Switch: the
        attestation in your repository is rewritten to name the new keys, and the relay signs with them from then on.</p>
      ${raw(
        newRecords(state)
          .map((r, i) => recordBlock(r, 'h3', `New DKIM key ${i + 1}`))
          .join('\n'),
      )}
      ${form(c, `${base(state)}/check`, 'Check the new records')}
      ${form(c, `${base(state)}/cancel`, 'Cancel the rotation', `Cancel the key rotation of ${state.domain}? The new keys are deleted.`)}`

  app.post('/account/domains/:domain/keys/start', async (c) => {
    const state = await held(c)
    await startRotation(deps.sql, needKeyring(), { did: session(c).did, domain: state.domain, detail: audit(c) })
    return c.redirect(base(state), 303)
  })

  app.post('/account/domains/:domain/keys/cancel', async (c) => {
    const state = await held(c)
    await cancelRotation(deps.sql, { did: session(c).did, domain: state.domain, detail: audit(c) })
    return c.redirect(base(state), 303)
  })

  app.post('/account/domains/:domain/keys/check', async (c) => {
    const state = await held(c)
    if (!state.pending) throw new KeysError(409, `No key rotation of ${state.domain} is under way.`)
    const seen = await look(c, state)
    const ready = seen.every((s) => s.state === 'published')
    const body = html`<h1>New DKIM records of ${state.domain}</h1>
      <p>${ready ? 'Both new records are published: you can switch.' : 'Not yet: publish the records as shown, or wait for them to propagate, then check again.'}</p>
      ${raw(seenTable(seen))}
      ${
        ready
          ? form(
              c,
              `${base(state)}/switch`,
              'Switch to the new keys',
              `Switch ${state.domain} to the new keys? Your attestation is rewritten and the relay signs with the new keys.`,
            )
          : form(c, `${base(state)}/check`, 'Check again')
      }
      <p><a href="${base(state)}">Back to the keys</a></p>`
    return page(c, `New DKIM records of ${state.domain}`, body)
  })

  app.post('/account/domains/:domain/keys/switch', async (c) => {
    const state = await held(c)
    if (!state.pending) throw new KeysError(409, `No key rotation of ${state.domain} is under way.`)
    // DNS first: the attestation must never name a selector receivers (and the labeler) cannot find.
    const seen = await look(c, state)
    if (!seen.every((s) => s.state === 'published')) {
      const body = html`<h1>Not switched</h1>
        <p role="alert">DNS does not serve both new records yet, so nothing was changed: the current keys still sign.</p>
        ${raw(seenTable(seen))}
        <p><a href="${base(state)}">Back to the keys</a></p>`
      return page(c, 'Not switched', body, 409)
    }
    const did = session(c).did
    const selectors = state.pending.map((k) => k.selector)
    let uri: string
    try {
      uri = await deps.publish({ did }, attestationRecord(state.domain, selectors))
    } catch (err) {
      if (err instanceof WizardError) throw err
      deps.logger?.warn({ did, domain: state.domain, err: (err as Error).message }, 'attestation write failed')
      throw new KeysError(
        502,
        'Your PDS did not take the new attestation record, so nothing was changed. Try again in a minute.',
      )
    }
    const done = await completeRotation(deps.sql, {
      did,
      domain: state.domain,
      expect: selectors,
      detail: { ...audit(c), uri },
    })
    const removable = new Date(Date.now() + deps.config.oldKeyRetention)
    const body = html`<h1>${state.domain} switched to the new keys</h1>
      <p>The attestation now names ${done.to.map((s) => html`<code>${s}</code> `)}(<code>${uri}</code>). The relay signs
        with the new keys within a minute; the labeler checks them at its next verification.</p>
      <p>Keep the old records (${done.from.map((s) => html`<code>${s}._domainkey.${state.domain}</code> `)}) in DNS
        until ${when(removable)}: mail already signed with the old keys may still be delivered until then. After that you
        can remove them.</p>
      <p><a href="${base(state)}">Back to the keys</a></p>`
    return page(c, `${state.domain} switched`, body)
  })

  return app
}

function title(status: ErrorStatus): string {
  if (status === 404) return 'Not found'
  if (status === 429) return 'Too many checks'
  if (status === 503) return 'Not available'
  if (status === 502) return 'Your PDS did not answer'
  if (status === 403) return 'Sign in again'
  return 'Not possible now'
}

const ATTR: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }
const escAttr = (v: string) => v.replace(/[&<>"']/g, (ch) => ATTR[ch]!)

/** Mounts the keys pages behind the session, with the wizard's resolver and the member's OAuth session. */
export function mountKeys(
  app: Hono<Env>,
  opts: { db: Db; logger: Logger; oauth: NodeOAuthClient; config: EnrollConfig },
): void {
  let keyring: Keyring | undefined
  try {
    keyring = loadKeyring(opts.config.kekFile)
  } catch {
    // mountEnroll logs the reason; the API key pages work without it, rotation says it is off.
  }
  app.route(
    '/',
    keysRoutes({
      sql: opts.db.$client,
      keyring,
      dns: wizardResolver(opts.config),
      config: opts.config,
      limiter: new CheckRateLimiter(opts.config.checkLimit, opts.config.checkWindow),
      publish: (account, record) => publishAttestation(opts.oauth, account, record),
      logger: opts.logger,
    }),
  )
}
