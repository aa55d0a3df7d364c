import type { StatusChange } from '@atmos/enrolment'
import { type Context, Hono } from 'hono'
import { checkPage, credentialsPage, domainForm, errorPage, issueCredentialsPage, recordsPage } from './views.ts'
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
}

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
    if (err instanceof WizardError) {
      if (err.retryAfterMs !== undefined) c.header('Retry-After', String(Math.ceil(err.retryAfterMs / 1000)))
      return c.html(errorPage(err.message), err.status)
    }
    throw err
  })
  const domainParam = (c: Context) => c.req.param('domain') ?? ''

  app.get('/', async (c) => {
    await signedIn(c)
    return c.html(domainForm())
  })
  app.post('/domain', async (c) => {
    const account = await signedIn(c)
    const form = await c.req.parseBody()
    const { enrolment } = await chooseDomain(deps, account, String(form.domain ?? ''))
    return c.redirect(`/enroll/${encodeURIComponent(enrolment.domain)}`, 303)
  })
  app.get('/:domain', async (c) => {
    const account = await signedIn(c)
    return c.html(recordsPage(await domainRecords(deps, account, domainParam(c))))
  })
  app.post('/:domain/check', async (c) => {
    const account = await signedIn(c)
    return c.html(checkPage(await checkDomainNow(deps, account, domainParam(c))))
  })
  app.post('/:domain/activate', async (c) => {
    const account = await signedIn(c)
    const activation = await activate(deps, account, domainParam(c))
    for (const change of activation.changes) await deps.announce(change).catch(() => {})
    return c.redirect(`/enroll/${encodeURIComponent(activation.domain)}/credentials`, 303)
  })
  app.get('/:domain/credentials', async (c) => {
    await signedIn(c)
    return c.html(issueCredentialsPage(domainParam(c)))
  })
  app.post('/:domain/credentials', async (c) => {
    const account = await signedIn(c)
    const settings = await credentials(deps, account, domainParam(c))
    c.header('Cache-Control', 'no-store')
    return c.html(credentialsPage(settings.username, settings))
  })
  return app
}
