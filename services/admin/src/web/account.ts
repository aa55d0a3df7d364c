import type { Db } from '@atmos/db'
import { DomainError, dailyCapFor, issueCredential, removeDomain } from '@atmos/enrolment'
import type { memberStatusChanged, TypedQueue } from '@atmos/queues'
import { notifyStatusChange } from '@atmos/reputation'
import type { Logger } from '@atmos/runtime'
import type { NodeOAuthClient } from '@atproto/oauth-client-node'
import { sql } from 'drizzle-orm'
import { type Context, Hono } from 'hono'
import { cleanSenderView } from '../account/clean-sender.ts'
import { dmarcDayDetail, dmarcDays, readDay } from '../account/dmarc.ts'
import { dmarcPage } from '../account/dmarc-views.ts'
import { FIGURE_WINDOWS, type FigureWindow, memberFigures, NotMemberDomainError } from '../account/figures.ts'
import { ForwardToError, parseForwardTo, setForwardTo } from '../account/forward-to.ts'
import { forwardsSection, recentForwards } from '../account/forwards.ts'
import { esc } from '../account/html.ts'
import { type LogPage, LogQueryError, messageLog, readLogRequest } from '../account/message-log.ts'
import { memberDomainIds, ownedLiveDomain as ownedDomain } from '../account/owner.ts'
import {
  accountPage,
  domainPage,
  domainPath,
  removeConfirmPage,
  removedPage,
  suppressionsPage,
} from '../account/pages.ts'
import { accountStanding, type CapRule } from '../account/standing.ts'
import { throttledView } from '../account/throttled.ts'
import { messageLogFragment } from '../account/views.ts'
import type { AdminConfig } from '../config.ts'
import { smtpSettings } from '../enroll/credentials.ts'
import { credentialsPage } from '../enroll/views.ts'
import type { LabelReader } from '../labels/query.ts'
import { liftSuppression, memberMayLift, memberSuppressions } from '../member/suppressions.ts'
import { errorPage, layout, raw } from './layout.ts'
import { pageSession, requireSignIn } from './pages.ts'
import type { SessionVars, WebSession } from './session.ts'
import { clientInfo } from './signin.ts'

type Env = { Variables: SessionVars }

/** Why a member gives a domain up on the account page (the history and audit rows say it). */
const REMOVAL_REASON = 'given up by its member on the account page'

export type AccountPagesOptions = {
  db: Db
  logger: Logger
  oauth: NodeOAuthClient
  config: AdminConfig['admin']
  labels: LabelReader
  /** member-status-changed: a removal tells the labeler (absent in tests that do not need it; the outbox covers it). */
  statusQueue?: TypedQueue<typeof memberStatusChanged> | undefined
}

/**
 * The member's account, signed in with atproto: /account (labels, domains, figures),
 * /account/messages (the message log), /account/suppressions (the list, lifting), and
 * /account/domains/:domain (forward-to, a new SMTP password, removal). Every query is scoped
 * by the member id of the session's DID; a domain that is not the member's live domain is
 * the same 404 as a page that does not exist.
 */
export function accountPages(opts: AccountPagesOptions): Hono<Env> {
  const { db, config } = opts
  const app = new Hono<Env>()
  app.use('/account', requireSignIn)
  app.use('/account/*', requireSignIn)
  // The relay's own rule with the relay's tiers (admin.warmingTiers and admin.dailyCap mirror them).
  const capFor: CapRule = (activatedAt, now) => dailyCapFor(activatedAt, now, config.warmingTiers, config.dailyCap)

  const render = (c: Context<Env>, title: string, body: string, status: 200 | 400 = 200, wide = false) =>
    c.html(layout({ title, body: raw(body), session: pageSession(c.get('session')!, null), wide }), status)
  const notFound = (s: WebSession) =>
    errorPage(404, 'Page not found', 'There is no page at this address.', pageSession(s, null))

  app.get('/account', async (c) => {
    const s = c.get('session')!
    const asked = c.req.query('window')
    if (asked !== undefined && !isWindow(asked)) {
      return errorPage(
        400,
        'No such time span',
        'The figures cover 24h, 7d or 30d; pick one of the links on your account page.',
        pageSession(s, null),
      )
    }
    const window: FigureWindow = asked ?? '24h'
    const member = await memberOf(db, s.did)
    const [handle, labels, standing, figures] = await Promise.all([
      handleOf(opts.oauth, s.did),
      opts.labels(s.did),
      member ? accountStanding(db, member.id, { capFor }) : null,
      member ? memberFigures(db, member.id, window) : null,
    ])
    const cleanSender = member ? await cleanSenderView(db, member.id, labels, config.cleanSender) : null
    const throttled = member ? await throttledView(db, member.id) : null
    const body = accountPage({
      did: s.did,
      handle,
      signedInUntil: s.expiresAt,
      standing,
      labels,
      cleanSender,
      throttled,
      figures,
      window,
      maxDomains: config.maxDomainsPerMember,
      csrf: s.csrf,
      disabledWebhooks: member ? await disabledWebhooks(db, member.id) : 0,
    })
    return c.html(layout({ title: 'Your account', body: raw(body), session: pageSession(s, handle) }))
  })

  app.get('/account/messages', async (c) => {
    const s = c.get('session')!
    const member = await memberOf(db, s.did)
    const read = readLogRequest(new URL(c.req.url).searchParams)
    let error = read.error
    let page: LogPage = { entries: [], next: null }
    const owned = member ? await memberDomainIds(db, member.id) : []
    if (member) {
      try {
        page = await messageLog(db, member.id, error ? { domain: read.query.domain } : read.query)
      } catch (err) {
        if (!(err instanceof NotMemberDomainError || err instanceof LogQueryError)) throw err
        // The same words for a domain of another account and one of no one's.
        error = err instanceof NotMemberDomainError ? 'Sent as: pick one of your own domains.' : err.message
        page = await messageLog(db, member.id, {})
      }
    } else if (read.query.domain) {
      error = 'Sent as: pick one of your own domains.'
    }
    const names = [...new Set(owned.map((d) => d.domain))]
    const body =
      '<h1>Your messages</h1><p><a href="/account">Back to your account</a></p>' +
      messageLogFragment(page, { action: '/account/messages', form: read.form, domains: names, error })
    return render(c, 'Your messages', body, error ? 400 : 200, true)
  })

  app.get('/account/suppressions', async (c) => {
    const s = c.get('session')!
    const member = await memberOf(db, s.did)
    const items = member ? await memberSuppressions(db, member.id) : []
    const lifted = c.req.query('lifted') === '1' ? 'The address' : undefined
    return render(
      c,
      'Suppression list',
      suppressionsPage(items, { csrf: s.csrf, mayLift: (x) => memberMayLift(x.reason), lifted }),
    )
  })

  app.post('/account/suppressions/lift', async (c) => {
    const s = c.get('session')!
    const form = await c.req.parseBody()
    const address = typeof form.address === 'string' ? form.address : ''
    const member = await memberOf(db, s.did)
    if (!member) {
      return errorPage(
        404,
        'Not on your list',
        `${address.slice(0, 320)} is not on your suppression list.`,
        pageSession(s, null),
      )
    }
    const result = await liftSuppression(db, {
      member,
      address,
      actor: `admin:${s.did}`,
      detail: { ip: clientInfo(c).ip, via: 'account page' },
    })
    if (!result.ok) {
      const title = { 400: 'Not an address', 403: 'Only an operator can lift this', 404: 'Not on your list' }[
        result.status
      ]
      return errorPage(result.status, title, `${result.message}.`, pageSession(s, null))
    }
    return c.redirect('/account/suppressions?lifted=1', 303)
  })

  app.get('/account/domains/:domain', async (c) => {
    const s = c.get('session')!
    const d = await ownedDomain(db, s.did, c.req.param('domain'))
    if (!d) return notFound(s)
    const forwards = forwardsSection(await recentForwards(db, d.id))
    return render(c, d.domain, domainPage(d, { csrf: s.csrf, notice: noticeOf(c.req.query('done')), forwards }))
  })

  app.get('/account/domains/:domain/dmarc', async (c) => {
    const s = c.get('session')!
    const d = await ownedDomain(db, s.did, c.req.param('domain'))
    if (!d) return notFound(s)
    const days = await dmarcDays(db, d)
    // A day outside the window, malformed or without reports shows the newest day instead.
    const asked = readDay(c.req.query('day'))
    const day = asked && days.some((x) => x.day === asked) ? asked : days[0]?.day
    const detail = day ? await dmarcDayDetail(db, d, day) : null
    const path = domainPath(d.domain, '/dmarc')
    const rua = config.enroll.dmarcRua.trim().replace(/^mailto:/i, '')
    return render(
      c,
      `DMARC reports for ${d.domain}`,
      dmarcPage({ domain: d.domain, path, days, detail, rua }),
      200,
      true,
    )
  })

  app.post('/account/domains/:domain/forward-to', async (c) => {
    const s = c.get('session')!
    const d = await ownedDomain(db, s.did, c.req.param('domain'))
    if (!d) return notFound(s)
    const form = await c.req.parseBody()
    const raw = typeof form.forward_to === 'string' ? form.forward_to : ''
    let forwardTo: string | null = null
    if (form.clear !== '1') {
      try {
        forwardTo = parseForwardTo(raw, d.domain)
      } catch (err) {
        if (!(err instanceof ForwardToError)) throw err
        const body = domainPage(d, { csrf: s.csrf, forwardError: err.message, forwardValue: raw.slice(0, 320) })
        return render(c, d.domain, body, 400)
      }
    }
    const done = await setForwardTo(db, {
      member: { id: d.memberId, did: s.did },
      domain: d.domain,
      forwardTo,
      actor: `admin:${s.did}`,
      detail: { ip: clientInfo(c).ip },
    })
    if (!done) return notFound(s)
    return c.redirect(`${domainPath(d.domain)}?done=${forwardTo ? 'forward-set' : 'forward-cleared'}`, 303)
  })

  app.post('/account/domains/:domain/credential', async (c) => {
    const s = c.get('session')!
    const d = await ownedDomain(db, s.did, c.req.param('domain'))
    if (!d) return notFound(s)
    let issued: { username: string; password: string }
    try {
      issued = await issueCredential(db.$client, {
        did: s.did,
        domain: d.domain,
        actor: `admin:${s.did}`,
        auditDetail: { ip: clientInfo(c).ip },
      })
    } catch (err) {
      if (!(err instanceof DomainError)) throw err
      return errorPage(409, 'No new password now', err.message, pageSession(s, null))
    }
    // Shown once: no cache may keep the page.
    c.header('Cache-Control', 'no-store')
    const body =
      credentialsPage(d.domain, smtpSettings(config.enroll, issued)) +
      `<p><a href="${esc(domainPath(d.domain))}">Back to ${esc(d.domain)}</a></p>`
    return render(c, `SMTP credentials for ${d.domain}`, body)
  })

  app.get('/account/domains/:domain/remove', async (c) => {
    const s = c.get('session')!
    const d = await ownedDomain(db, s.did, c.req.param('domain'))
    if (!d) return notFound(s)
    return render(c, `Remove ${d.domain}`, removeConfirmPage(d.domain, { csrf: s.csrf }))
  })

  app.post('/account/domains/:domain/remove', async (c) => {
    const s = c.get('session')!
    const d = await ownedDomain(db, s.did, c.req.param('domain'))
    if (!d) return notFound(s)
    const form = await c.req.parseBody()
    const typed = typeof form.confirm === 'string' ? form.confirm.trim().toLowerCase() : ''
    if (typed !== d.domain) {
      const error = typed ? `You typed ${typed.slice(0, 253)}, not ${d.domain}.` : `Type ${d.domain} to confirm.`
      return render(c, `Remove ${d.domain}`, removeConfirmPage(d.domain, { csrf: s.csrf, error }), 400)
    }
    let removed: Awaited<ReturnType<typeof removeDomain>>
    try {
      removed = await removeDomain(db.$client, d.domain, REMOVAL_REASON, `admin:${s.did}`, {
        memberId: d.memberId,
        auditDetail: { ip: clientInfo(c).ip },
      })
    } catch (err) {
      // Removed or moved away by another request meanwhile: it is not the member's live domain now.
      if (err instanceof DomainError) return notFound(s)
      throw err
    }
    // The same announcement as `relay domains remove`; the history row is the outbox if Redis is away.
    const queue = opts.statusQueue
    const announced = queue
      ? await notifyStatusChange(db, queue, {
          did: removed.did,
          status: 'suspended',
          reason: `domain removed: ${REMOVAL_REASON}`,
          changeId: removed.changeId,
        }).then(
          () => true,
          (err: Error) => {
            opts.logger.warn({ err: err.message, changeId: removed.changeId }, 'domain removal not announced yet')
            return false
          },
        )
      : false
    return render(c, `${d.domain} removed`, removedPage(d.domain, announced))
  })

  return app
}

function isWindow(v: string): v is FigureWindow {
  return Object.hasOwn(FIGURE_WINDOWS, v)
}

const NOTICES: Record<string, string> = {
  'forward-set': 'Replies are forwarded to the new address.',
  'forward-cleared': 'Replies are no longer forwarded.',
}

/** Only our own fixed words: a link cannot put text of its choosing on the page. */
function noticeOf(key: string | undefined): string | undefined {
  return key === undefined ? undefined : NOTICES[key]
}

/** The session DID's member row, or null before it enrolled anything. */
async function memberOf(db: Db, did: string): Promise<{ id: number; did: string } | null> {
  const [m] = await db.execute<{ id: number }>(sql`select id::int as id from members where did = ${did}`)
  return m ? { id: Number(m.id), did } : null
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

/** The member's webhook endpoints disabled after failing deliveries (the webhooks service disables them). */
async function disabledWebhooks(db: Db, memberId: number): Promise<number> {
  const [r] = await db.execute<{ n: number }>(
    sql`select count(*)::int as n from webhook_endpoints where member_id = ${memberId} and disabled_at is not null`,
  )
  return Number(r?.n ?? 0)
}
