import { type AttestationRecord, heldEnrolment, type StatusChange } from '@atmos/enrolment'
import { type Context, Hono, type MiddlewareHandler } from 'hono'
import type { LabelReader } from '../labels/query.ts'
import { enrolmentProgress } from './progress.ts'
import {
  checkPage,
  credentialsPage,
  domainForm,
  enrolmentList,
  errorPage,
  issueCredentialsPage,
  recordsPage,
  watchPage,
} from './views.ts'
import { watchLabels } from './watch.ts'
import {
  type Account,
  activate,
  checkDomainNow,
  chooseDomain,
  credentials,
  domainRecords,
  type WizardDeps,
  WizardError,
} from './wizard.ts'

export type EnrollRouteDeps = WizardDeps & {
  /** The signed-in account of the request, or null (the OAuth sign-in provides it). */
  account: (c: Context) => Promise<Account | null> | Account | null
  /** Tells the labeler of a status change (@atmos/reputation notifyStatusChange; the outbox covers a failure). */
  announce: (change: StatusChange) => Promise<void>
  /** The session's CSRF token, for the forms. */
  csrf: (c: Context) => string
  /** Puts a page's own part in the shared layout; the status is the response's. */
  render: (c: Context, fragment: string, status?: 200 | 400 | 403 | 404 | 409 | 429) => Response | Promise<Response>
  /** What audit rows of the request carry (the client's address); optional. */
  auditDetail?: (c: Context) => Record<string, unknown>
  /** Writes the attestation to the account's own repository through its OAuth session; returns the record's URI. */
  publish: (account: Account, record: AttestationRecord) => Promise<string>
  /** Our labeler's queryLabels, for the page after publishing; absent: the page says labels cannot be read. */
  readLabels?: LabelReader
}

const NO_LABELER: LabelReader = async () => ({ ok: false, reason: 'the labeler address is not configured' })

/**
 * The wizard's pages under /enroll, server-rendered. Every route needs a signed-in account
 * and acts on that account's DID alone. CSRF protection of the POSTs is the session layer's
 * (the lead mounts these behind it).
 */
export function enrollRoutes(deps: EnrollRouteDeps): Hono {
  const app = new Hono()
  const signedIn = async (c: Context): Promise<Account> => {
    const account = await deps.account(c)
    if (!account) throw new WizardError('Sign in first.', 403)
    return account
  }
  app.onError((err, c) => {
    // The labels route is polled by static/admin.js: its refusals are JSON too.
    if (err instanceof WizardError && c.req.path.endsWith('/labels')) {
      return c.json({ error: err.status === 404 ? 'NotFound' : 'Refused', message: err.message }, err.status)
    }
    if (err instanceof WizardError) {
      if (err.retryAfterMs !== undefined) c.header('Retry-After', String(Math.ceil(err.retryAfterMs / 1000)))
      return deps.render(c, errorPage(err.message), err.status)
    }
    throw err
  })
  const domainParam = (c: Context) => c.req.param('domain') ?? ''
  // Every step after the first acts on a domain this account holds; any other name (another
  // member's domain, one nobody holds) is 404 before a step runs, so no step can say whose it is.
  const holdsDomain: MiddlewareHandler = async (c, next) => {
    const account = await signedIn(c)
    const name = domainParam(c).toLowerCase()
    if (!(await heldEnrolment(deps.sql, account.did, name))) {
      throw new WizardError(`You have not started enrolling ${name.slice(0, 253)}.`, 404)
    }
    await next()
  }
  app.use('/:domain/:step', holdsDomain)

  app.get('/', async (c) => {
    const account = await signedIn(c)
    const progress = await enrolmentProgress(deps.sql, account.did)
    return deps.render(c, `${domainForm(deps.csrf(c))}\n${enrolmentList(progress)}`)
  })
  app.post('/domain', async (c) => {
    const account = await signedIn(c)
    const form = await c.req.parseBody()
    const { enrolment } = await chooseDomain(deps, account, String(form.domain ?? ''), deps.auditDetail?.(c))
    return c.redirect(`/enroll/${encodeURIComponent(enrolment.domain)}`, 303)
  })
  app.get('/:domain', async (c) => {
    const account = await signedIn(c)
    return deps.render(c, recordsPage(await domainRecords(deps, account, domainParam(c)), deps.csrf(c)))
  })
  app.post('/:domain/check', async (c) => {
    const account = await signedIn(c)
    return deps.render(c, checkPage(await checkDomainNow(deps, account, domainParam(c)), deps.csrf(c)))
  })
  app.post('/:domain/publish', async (c) => {
    const account = await signedIn(c)
    const held = await heldEnrolment(deps.sql, account.did, domainParam(c).toLowerCase())
    if (!held) throw new WizardError(`${account.did} is not enrolling ${domainParam(c)}`, 404)
    // The record names the keys the pool issued for this domain: the labeler checks each.
    const uri = await deps.publish(account, { ...held.attestation, createdAt: new Date().toISOString() })
    // The audit row also starts the labels page's wait (and says the record's URI there).
    await deps.sql`
      insert into audit_log (actor, action, did, domain, member_id, detail)
      values (${`admin:${account.did}`}, 'attestation.published', ${account.did}, ${held.domain}, ${held.memberId},
              ${JSON.stringify({ uri, ...deps.auditDetail?.(c) })}::text::jsonb)`
    // Redirect after the POST: reloading the labels page must not publish again.
    return c.redirect(`/enroll/${encodeURIComponent(held.domain)}/watch`, 303)
  })
  const watchDeps = () => ({
    sql: deps.sql,
    readLabels: deps.readLabels ?? NO_LABELER,
    timeoutMs: deps.config.labelsTimeout,
  })
  app.get('/:domain/watch', async (c) => {
    const account = await signedIn(c)
    const state = await watchLabels(watchDeps(), account, domainParam(c))
    const [row] = await deps.sql<{ uri: string | null }[]>`
      select detail->>'uri' as uri from audit_log
      where did = ${account.did} and domain = ${state.domain} and action = 'attestation.published'
      order by id desc limit 1`
    return deps.render(
      c,
      watchPage(state, deps.csrf(c), { uri: row?.uri ?? null, timeoutMs: deps.config.labelsTimeout }),
    )
  })
  // What static/admin.js polls on the labels page: the session DID's labels, never another's.
  app.get('/:domain/labels', async (c) => {
    const account = await signedIn(c)
    const state = await watchLabels(watchDeps(), account, domainParam(c))
    return c.json(state)
  })
  app.post('/:domain/activate', async (c) => {
    const account = await signedIn(c)
    const activation = await activate(deps, account, domainParam(c), deps.auditDetail?.(c))
    for (const change of activation.changes) await deps.announce(change).catch(() => {})
    // Back to the labels: relay-member follows the activation, and the credentials are offered there.
    return c.redirect(`/enroll/${encodeURIComponent(activation.domain)}/watch`, 303)
  })
  app.get('/:domain/credentials', async (c) => {
    await signedIn(c)
    return deps.render(c, issueCredentialsPage(domainParam(c), deps.csrf(c)))
  })
  app.post('/:domain/credentials', async (c) => {
    const account = await signedIn(c)
    const settings = await credentials(deps, account, domainParam(c), deps.auditDetail?.(c))
    c.header('Cache-Control', 'no-store')
    return deps.render(c, credentialsPage(settings.username, settings, settings.apiKey))
  })
  return app
}
