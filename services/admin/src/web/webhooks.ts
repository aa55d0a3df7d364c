import type { Db } from '@atmos/db'
import type { Logger } from '@atmos/runtime'
import { type Keyring, loadKeyring } from '@atmos/secrets'
import {
  checkEventTypes,
  checkWebhookUrl,
  createEndpoint,
  deleteEndpoint,
  type Endpoint,
  EndpointError,
  emitEvent,
  enableEndpoint,
  getEndpoint,
  listEndpoints,
  MAX_ENDPOINTS_PER_MEMBER,
  recentDeliveries,
  rotateSecret,
  updateEndpoint,
  WebhookUrlError,
} from '@atmos/webhook-events'
import { type Context, Hono } from 'hono'
import { type EndpointForm, endpointPage, secretPage, webhookPath, webhooksPage } from '../account/webhooks-views.ts'
import type { AdminConfig } from '../config.ts'
import { errorPage, layout, raw } from './layout.ts'
import { pageSession, requireSignIn } from './pages.ts'
import { WindowLimiter } from './rate-limit.ts'
import type { SessionVars, WebSession } from './session.ts'

type Env = { Variables: SessionVars }

export type WebhookPagesOptions = {
  db: Db
  logger: Logger
  config: AdminConfig['admin']['webhooks']
  /** The keyring sealing endpoint secrets; undefined: endpoints cannot be added or rotated (the page says so). */
  keyring: Keyring | undefined
}

const ID = /^[1-9][0-9]{0,14}$/

const NOTICES: Record<string, string> = {
  saved: 'The endpoint was saved.',
  test: 'A test event is on its way; its delivery shows below in a few seconds.',
  enabled: 'The endpoint is enabled again; new events are sent to it.',
  deleted: 'The endpoint was deleted.',
}

/**
 * /account/webhooks and below: a member's webhook endpoints. Every query is scoped by the
 * member id of the session's DID; an endpoint id of another member's is the same 404 as one
 * that does not exist. Every POST goes through the CSRF check like the rest of the account.
 */
export function webhookPages(opts: WebhookPagesOptions): Hono<Env> {
  const { db } = opts
  const sql = db.$client
  const app = new Hono<Env>()
  app.use('/account/webhooks', requireSignIn)
  app.use('/account/webhooks/*', requireSignIn)
  const policy = { allowHttp: opts.config.allowHttp, allowPrivate: opts.config.allowPrivate }
  // Test events and rotations are cheap to ask for and each costs an outbox row or a
  // sealing: a few a minute per account (per replica) is all a person needs.
  const limiter = new WindowLimiter(10, 60_000)
  const tooMany = (s: WebSession, wait: number) =>
    errorPage(429, 'Too many requests', `Try again in ${wait} seconds.`, pageSession(s, null), {
      'Retry-After': String(wait),
    })

  const render = (c: Context<Env>, title: string, body: string, status: 200 | 400 = 200) =>
    c.html(layout({ title, body: raw(body), session: pageSession(c.get('session')!, null) }), status)
  const notFound = (s: WebSession) =>
    errorPage(404, 'Page not found', 'There is no page at this address.', pageSession(s, null))
  const noMember = (s: WebSession) =>
    errorPage(
      404,
      'Not a member yet',
      'Enrol a domain first; webhooks report on the mail you send.',
      pageSession(s, null),
    )
  const noKeyring = (s: WebSession) =>
    errorPage(
      503,
      'Not available',
      'Webhook endpoints cannot be added right now; try again later.',
      pageSession(s, null),
    )

  /** The member and its endpoint named by the URL, or null (not a number, another member's, no one's). */
  const owned = async (s: WebSession, param: string): Promise<{ memberId: number; e: Endpoint } | null> => {
    const memberId = await memberIdOf(db, s.did)
    if (memberId === null || !ID.test(param)) return null
    const e = await getEndpoint(sql, memberId, Number(param))
    return e ? { memberId, e } : null
  }

  app.get('/account/webhooks', async (c) => {
    const s = c.get('session')!
    const memberId = await memberIdOf(db, s.did)
    if (memberId === null) return noMember(s)
    const endpoints = await listEndpoints(sql, memberId)
    const notice = NOTICES[c.req.query('done') ?? '']
    return render(c, 'Webhooks', webhooksPage(endpoints, { csrf: s.csrf, notice, max: MAX_ENDPOINTS_PER_MEMBER }))
  })

  app.post('/account/webhooks', async (c) => {
    const s = c.get('session')!
    const memberId = await memberIdOf(db, s.did)
    if (memberId === null) return noMember(s)
    if (!opts.keyring) return noKeyring(s)
    const form = await readForm(c)
    let url: string
    let events: ReturnType<typeof checkEventTypes>
    let created: { id: number; secret: string }
    try {
      url = checkWebhookUrl(form.url, policy)
      events = checkEventTypes(form.events)
      created = await createEndpoint(sql, opts.keyring, { memberId, url, events, description: form.description })
    } catch (err) {
      if (!(err instanceof WebhookUrlError || err instanceof EndpointError)) throw err
      const endpoints = await listEndpoints(sql, memberId)
      const body = webhooksPage(endpoints, { csrf: s.csrf, form, error: err.message, max: MAX_ENDPOINTS_PER_MEMBER })
      return render(c, 'Webhooks', body, 400)
    }
    opts.logger.info({ did: s.did, endpointId: created.id }, 'webhook endpoint added')
    // Shown once: no cache may keep the page.
    c.header('Cache-Control', 'no-store')
    return render(c, 'Endpoint added', secretPage({ id: created.id, url }, created.secret, false))
  })

  app.get('/account/webhooks/:id', async (c) => {
    const s = c.get('session')!
    const o = await owned(s, c.req.param('id'))
    if (!o) return notFound(s)
    const deliveries = await recentDeliveries(sql, o.e.id)
    const notice = NOTICES[c.req.query('done') ?? '']
    return render(c, 'Webhook endpoint', endpointPage(o.e, deliveries, { csrf: s.csrf, notice }))
  })

  app.post('/account/webhooks/:id', async (c) => {
    const s = c.get('session')!
    const o = await owned(s, c.req.param('id'))
    if (!o) return notFound(s)
    const form = await readForm(c)
    try {
      const url = checkWebhookUrl(form.url, policy)
      const events = checkEventTypes(form.events)
      await updateEndpoint(sql, { memberId: o.memberId, id: o.e.id, url, events, description: form.description })
    } catch (err) {
      if (!(err instanceof WebhookUrlError || err instanceof EndpointError)) throw err
      const deliveries = await recentDeliveries(sql, o.e.id)
      return render(
        c,
        'Webhook endpoint',
        endpointPage(o.e, deliveries, { csrf: s.csrf, form, error: err.message }),
        400,
      )
    }
    return c.redirect(`${webhookPath(o.e.id)}?done=saved`, 303)
  })

  app.post('/account/webhooks/:id/test', async (c) => {
    const s = c.get('session')!
    const o = await owned(s, c.req.param('id'))
    if (!o) return notFound(s)
    const wait = limiter.take(s.did)
    if (wait) return tooMany(s, wait)
    if (o.e.disabledAt) {
      return errorPage(
        409,
        'Endpoint disabled',
        'Enable the endpoint again before sending it a test event.',
        pageSession(s, null),
      )
    }
    await emitEvent(db, {
      memberId: o.memberId,
      endpointId: o.e.id,
      type: 'test',
      data: { message: 'A test event from the account page.', endpointId: o.e.id, at: new Date().toISOString() },
    })
    return c.redirect(`${webhookPath(o.e.id)}?done=test`, 303)
  })

  app.post('/account/webhooks/:id/rotate', async (c) => {
    const s = c.get('session')!
    const o = await owned(s, c.req.param('id'))
    if (!o) return notFound(s)
    if (!opts.keyring) return noKeyring(s)
    const wait = limiter.take(s.did)
    if (wait) return tooMany(s, wait)
    const secret = await rotateSecret(sql, opts.keyring, {
      memberId: o.memberId,
      id: o.e.id,
      graceMs: opts.config.rotationGrace,
    })
    if (!secret) return notFound(s)
    c.header('Cache-Control', 'no-store')
    return render(c, 'New signing secret', secretPage(o.e, secret, true))
  })

  app.post('/account/webhooks/:id/enable', async (c) => {
    const s = c.get('session')!
    const o = await owned(s, c.req.param('id'))
    if (!o || !(await enableEndpoint(sql, o.memberId, o.e.id))) return notFound(s)
    return c.redirect(`${webhookPath(o.e.id)}?done=enabled`, 303)
  })

  app.post('/account/webhooks/:id/delete', async (c) => {
    const s = c.get('session')!
    const o = await owned(s, c.req.param('id'))
    if (!o || !(await deleteEndpoint(sql, o.memberId, o.e.id))) return notFound(s)
    return c.redirect('/account/webhooks?done=deleted', 303)
  })

  return app
}

/** Mounts the webhook pages, with the keyring when its file can be read (the reason is logged otherwise). */
export function mountWebhooks(
  app: Hono<Env>,
  opts: { db: Db; logger: Logger; config: AdminConfig['admin']['webhooks'] },
): void {
  let keyring: Keyring | undefined
  try {
    keyring = loadKeyring(opts.config.kekFile)
  } catch (err) {
    opts.logger.warn(
      { kekFile: opts.config.kekFile, err: (err as Error).message },
      'webhook endpoints cannot be added or rotated: the key file is unreadable (webhooks key init)',
    )
  }
  app.route('/', webhookPages({ ...opts, keyring }))
}

/** The form's fields, bounded: a URL past its limit is refused by checkWebhookUrl, the rest cut. */
async function readForm(c: Context<Env>): Promise<EndpointForm> {
  const body = await c.req.parseBody({ all: true })
  const one = (v: unknown) => (typeof v === 'string' ? v : '')
  const events = ([] as unknown[]).concat(body.events ?? []).filter((v): v is string => typeof v === 'string')
  return {
    url: one(body.url).slice(0, 4096),
    description: one(body.description).slice(0, 200),
    events: events.slice(0, 32).map((e) => e.slice(0, 64)),
  }
}

async function memberIdOf(db: Db, did: string): Promise<number | null> {
  const [m] = await db.$client<{ id: string }[]>`select id::text from members where did = ${did}`
  return m ? Number(m.id) : null
}
