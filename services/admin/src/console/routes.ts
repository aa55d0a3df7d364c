import type { Db } from '@atmos/db'
import { dailyCapFor } from '@atmos/enrolment'
import type { memberStatusChanged, TypedQueue } from '@atmos/queues'
import {
  computeReputation,
  DEFAULT_THRESHOLDS,
  setDomainStatus,
  setMemberStatus,
  UnknownDomainError,
  UnknownMemberError,
} from '@atmos/reputation'
import type { Logger } from '@atmos/runtime'
import { type Context, Hono } from 'hono'
import { FIGURE_WINDOWS, type FigureWindow, NotMemberDomainError } from '../account/figures.ts'
import { esc } from '../account/html.ts'
import { type LogPage, LogQueryError, messageLog, readLogRequest } from '../account/message-log.ts'
import { memberDomainIds } from '../account/owner.ts'
import { accountStanding, type CapRule } from '../account/standing.ts'
import { messageLogFragment } from '../account/views.ts'
import type { AdminConfig } from '../config.ts'
import { memberSuppressions } from '../member/suppressions.ts'
import { memberView } from '../operator/member.ts'
import { listThrottleDecisions } from '../operator/throttle-decisions.ts'
import { errorPage, layout, raw } from '../web/layout.ts'
import { pageSession, requireOperator } from '../web/pages.ts'
import type { SessionVars, WebSession } from '../web/session.ts'
import { clientInfo } from '../web/signin.ts'
import { operatorLiftSuppression } from './actions.ts'
import { auditPage, MAX_FILTER } from './audit.ts'
import { currentLabels, heldDomain, memberIdOf, recentFeedback, recentStatusChanges, searchMembers } from './members.ts'
import { labelHead, poolVolume, type QueueReader, siteRates } from './pool.ts'
import {
  auditPageView,
  consoleNav,
  liftConfirmPage,
  memberPage,
  memberPath,
  membersPage,
  poolPage,
  statusConfirmPage,
} from './views.ts'

type Env = { Variables: SessionVars }

export type ConsoleOptions = {
  db: Db
  logger: Logger
  config: AdminConfig['admin']
  /** member-status-changed: suspensions and reinstatements tell the labeler (absent: those actions answer 503). */
  statusQueue?: TypedQueue<typeof memberStatusChanged> | undefined
  /** The queues' depths; absent when the admin runs without Redis (the page says so). */
  queues?: QueueReader | undefined
}

const DID = /^did:(plc|web):[a-zA-Z0-9._:%-]{1,2048}$/
const MAX_REASON = 1000

/** Notices a redirect may ask for: only our own words reach the page. */
const NOTICES: Record<string, string> = {
  suspended: 'The member is suspended.',
  active: 'The member is active again.',
  'domain-suspended': 'The domain is suspended.',
  'domain-active': 'The domain is active again.',
  lifted: 'The suppression was lifted.',
}

/**
 * The operator console under /operator: the pool at a glance, members and their history,
 * the audit log, and the status and suppression actions (each confirmed, with a reason,
 * CSRF-checked by the app's middleware, audited by the function it calls). Every route sits
 * behind requireOperator: signed out, a 303 to sign-in; signed in and not on
 * ATMOS_ADMIN_OPERATORS, 403, for GET and POST alike.
 */
export function consolePages(opts: ConsoleOptions): Hono<Env> {
  const { db, config } = opts
  const app = new Hono<Env>()
  app.use('/operator', requireOperator)
  app.use('/operator/*', requireOperator)
  const capFor: CapRule = (activatedAt, now) => dailyCapFor(activatedAt, now, config.warmingTiers, config.dailyCap)
  const thresholds = DEFAULT_THRESHOLDS

  const render = (c: Context<Env>, title: string, body: string, status: 200 | 400 = 200) =>
    c.html(layout({ title, body: raw(body), session: pageSession(c.get('session')!, null), wide: true }), status)
  const notFound = (s: WebSession, what: string) =>
    errorPage(404, 'No such member', `There is no member ${what.slice(0, 2100)}.`, pageSession(s, null))

  /** The member named by the path, or the 404 page. */
  const memberOfPath = async (c: Context<Env>) => {
    const did = c.req.param('did') ?? ''
    const id = DID.test(did) ? await memberIdOf(db, did) : null
    return id === null ? null : { id, did }
  }

  app.get('/operator', async (c) => {
    const asked = c.req.query('window')
    if (asked !== undefined && !Object.hasOwn(FIGURE_WINDOWS, asked)) {
      return errorPage(
        400,
        'No such time span',
        'The figures cover 24h, 7d or 30d.',
        pageSession(c.get('session')!, null),
      )
    }
    const window = (asked ?? '24h') as FigureWindow
    const [volume, sites24h, sites7d, queues, head] = await Promise.all([
      poolVolume(db, window),
      siteRates(db, 24),
      siteRates(db, 7 * 24),
      opts.queues ? opts.queues.read() : Promise.resolve(null),
      labelHead(db),
    ])
    return render(c, 'The pool', poolPage({ window, volume, sites24h, sites7d, queues, labelHead: head }))
  })

  app.get('/operator/members', async (c) => {
    const q = (c.req.query('q') ?? '').slice(0, 2048)
    const before = Number(c.req.query('before') ?? '')
    const page = await searchMembers(db, {
      text: q,
      before: Number.isSafeInteger(before) && before > 0 ? before : undefined,
    })
    // A page is 25 members: their standing, reputation and labels one member at a time.
    const items = []
    for (const row of page.items) {
      const [labels, standing, reputation] = await Promise.all([
        currentLabels(db, row.did),
        accountStanding(db, row.id, { capFor }),
        computeReputation(db, row.id, { thresholds }),
      ])
      items.push({ row, labels, standing, reputation })
    }
    return render(c, 'Members', membersPage({ q, items, next: page.next, thresholds }))
  })

  app.get('/operator/members/:did', async (c) => {
    const s = c.get('session')!
    const m = await memberOfPath(c)
    if (!m) return notFound(s, c.req.param('did'))
    const member = await memberView(db, m.did)
    if (!member) return notFound(s, m.did)
    const [labels, standing, reputation, changes, feedback, throttle, suppressions] = await Promise.all([
      currentLabels(db, m.did),
      accountStanding(db, m.id, { capFor }),
      computeReputation(db, m.id, { thresholds }),
      recentStatusChanges(db, m.id),
      recentFeedback(db, m.id),
      listThrottleDecisions(db, { member: m.did, limit: 20 }),
      memberSuppressions(db, m.id),
    ])
    const done = c.req.query('done')
    return render(
      c,
      member.handle ?? member.did,
      memberPage({
        member,
        labels,
        standing,
        reputation,
        thresholds,
        changes,
        feedback,
        throttle,
        suppressions,
        notice: done !== undefined && Object.hasOwn(NOTICES, done) ? NOTICES[done] : undefined,
      }),
    )
  })

  app.get('/operator/members/:did/messages', async (c) => {
    const s = c.get('session')!
    const m = await memberOfPath(c)
    if (!m) return notFound(s, c.req.param('did'))
    // The member's own log, as its account page shows it.
    const read = readLogRequest(new URL(c.req.url).searchParams)
    let error = read.error
    let page: LogPage = { entries: [], next: null }
    try {
      page = await messageLog(db, m.id, error ? { domain: read.query.domain } : read.query)
    } catch (err) {
      if (!(err instanceof LogQueryError || err instanceof NotMemberDomainError)) throw err
      error = err instanceof LogQueryError ? err.message : 'Sent as: pick one of the member’s domains.'
      page = await messageLog(db, m.id, {})
    }
    const names = [...new Set((await memberDomainIds(db, m.id)).map((d) => d.domain))]
    const body =
      `<h1>Messages of ${esc(m.did)}</h1>` +
      consoleNav('members') +
      `<p><a href="${esc(memberPath(m.did))}">Back to the member</a></p>` +
      messageLogFragment(page, { action: memberPath(m.did, '/messages'), form: read.form, domains: names, error })
    return render(c, 'Message log', body, error ? 400 : 200)
  })

  app.get('/operator/members/:did/status', async (c) => {
    const s = c.get('session')!
    const m = await memberOfPath(c)
    if (!m) return notFound(s, c.req.param('did'))
    const to = c.req.query('to')
    if (to !== 'active' && to !== 'suspended') {
      return errorPage(400, 'No such status', 'A member is suspended or reinstated (active).', pageSession(s, null))
    }
    return render(c, 'Confirm', statusConfirmPage({ did: m.did, to, csrf: s.csrf }))
  })

  app.post('/operator/members/:did/status', async (c) => {
    const s = c.get('session')!
    const m = await memberOfPath(c)
    if (!m) return notFound(s, c.req.param('did'))
    const form = await c.req.parseBody()
    const to = form.to
    if (to !== 'active' && to !== 'suspended') {
      return errorPage(400, 'No such status', 'A member is suspended or reinstated (active).', pageSession(s, null))
    }
    const reason = typeof form.reason === 'string' ? form.reason.trim() : ''
    const error = confirmProblem(form.confirm, reason)
    if (error) {
      return render(
        c,
        'Confirm',
        statusConfirmPage({ did: m.did, to, csrf: s.csrf, error, reason: reason.slice(0, MAX_REASON) }),
        400,
      )
    }
    if (!opts.statusQueue) {
      return errorPage(503, 'Not available', 'Status changes need the queue to the labeler.', pageSession(s, null))
    }
    try {
      // Records the change and its audit row in one transaction, then tells the labeler
      // (the history row is the outbox when Redis does not take the event).
      const result = await setMemberStatus(db, opts.statusQueue, m.did, to, reason, `admin:${s.did}`)
      opts.logger.info(
        { did: m.did, to, changed: result.changed, enqueued: result.enqueued, operator: s.did, ip: clientInfo(c).ip },
        'operator changed a member status in the console',
      )
    } catch (err) {
      if (err instanceof UnknownMemberError) return notFound(s, m.did)
      throw err
    }
    return c.redirect(`${memberPath(m.did)}?done=${to}`, 303)
  })

  /** The member's live domain named by the path, or null (another member's, removed or no one's alike). */
  const domainOfPath = async (c: Context<Env>, m: { id: number }) => {
    const name = (c.req.param('domain') ?? '').trim().toLowerCase().slice(0, 253)
    return (await heldDomain(db, m.id, name)) ? name : null
  }

  app.get('/operator/members/:did/domains/:domain/status', async (c) => {
    const s = c.get('session')!
    const m = await memberOfPath(c)
    if (!m) return notFound(s, c.req.param('did'))
    const domain = await domainOfPath(c, m)
    if (!domain) return notFound(s, `with the domain ${c.req.param('domain')}`)
    const to = c.req.query('to')
    if (to !== 'active' && to !== 'suspended') {
      return errorPage(400, 'No such status', 'A domain is suspended or reinstated (active).', pageSession(s, null))
    }
    return render(c, 'Confirm', statusConfirmPage({ did: m.did, domain, to, csrf: s.csrf }))
  })

  app.post('/operator/members/:did/domains/:domain/status', async (c) => {
    const s = c.get('session')!
    const m = await memberOfPath(c)
    if (!m) return notFound(s, c.req.param('did'))
    const domain = await domainOfPath(c, m)
    if (!domain) return notFound(s, `with the domain ${c.req.param('domain')}`)
    const form = await c.req.parseBody()
    const to = form.to
    if (to !== 'active' && to !== 'suspended') {
      return errorPage(400, 'No such status', 'A domain is suspended or reinstated (active).', pageSession(s, null))
    }
    const reason = typeof form.reason === 'string' ? form.reason.trim() : ''
    const problem = confirmProblem(form.confirm, reason)
    if (problem) {
      const page = statusConfirmPage({
        did: m.did,
        domain,
        to,
        csrf: s.csrf,
        error: problem,
        reason: reason.slice(0, MAX_REASON),
      })
      return render(c, 'Confirm', page, 400)
    }
    if (!opts.statusQueue) {
      return errorPage(503, 'Not available', 'Status changes need the queue to the labeler.', pageSession(s, null))
    }
    try {
      // The same change as `relay domains suspend|reinstate`: history row, audit row, the labeler told.
      await setDomainStatus(db, opts.statusQueue, domain, to, reason, `admin:${s.did}`)
    } catch (err) {
      if (err instanceof UnknownDomainError) return notFound(s, `with the domain ${domain}`)
      throw err
    }
    return c.redirect(`${memberPath(m.did)}?done=domain-${to}`, 303)
  })

  app.get('/operator/members/:did/suppressions/lift', async (c) => {
    const s = c.get('session')!
    const m = await memberOfPath(c)
    if (!m) return notFound(s, c.req.param('did'))
    const address = (c.req.query('address') ?? '').trim().toLowerCase().slice(0, 320)
    const entry = (await memberSuppressions(db, m.id)).find((x) => x.address === address)
    if (!entry) {
      return errorPage(
        404,
        'Not on the list',
        `${address} is not on ${m.did}'s suppression list.`,
        pageSession(s, null),
      )
    }
    return render(c, 'Confirm', liftConfirmPage({ did: m.did, address, suppressed: entry.reason, csrf: s.csrf }))
  })

  app.post('/operator/members/:did/suppressions/lift', async (c) => {
    const s = c.get('session')!
    const m = await memberOfPath(c)
    if (!m) return notFound(s, c.req.param('did'))
    const form = await c.req.parseBody()
    const address = typeof form.address === 'string' ? form.address.trim().toLowerCase().slice(0, 320) : ''
    const reason = typeof form.reason === 'string' ? form.reason.trim() : ''
    const error = confirmProblem(form.confirm, reason)
    if (error) {
      const entry = (await memberSuppressions(db, m.id)).find((x) => x.address === address)
      if (!entry) {
        return errorPage(
          404,
          'Not on the list',
          `${address} is not on ${m.did}'s suppression list.`,
          pageSession(s, null),
        )
      }
      return render(
        c,
        'Confirm',
        liftConfirmPage({
          did: m.did,
          address,
          suppressed: entry.reason,
          csrf: s.csrf,
          error,
          reason: reason.slice(0, MAX_REASON),
        }),
        400,
      )
    }
    const result = await operatorLiftSuppression(db, {
      member: m,
      address,
      reason,
      actor: `admin:${s.did}`,
      detail: { ip: clientInfo(c).ip, via: 'operator console' },
    })
    if (!result.ok) return errorPage(404, 'Not on the list', `${result.message}.`, pageSession(s, null))
    return c.redirect(`${memberPath(m.did)}?done=lifted`, 303)
  })

  app.get('/operator/audit', async (c) => {
    const pick = (name: string) => {
      const v = (c.req.query(name) ?? '').trim()
      return v && v.length <= MAX_FILTER ? v : undefined
    }
    const before = Number(c.req.query('before') ?? '')
    const filter = {
      actor: pick('actor'),
      did: pick('did'),
      action: pick('action'),
      before: Number.isSafeInteger(before) && before > 0 ? before : undefined,
    }
    const page = await auditPage(db, filter)
    return render(c, 'Audit log', auditPageView({ filter, items: page.items, next: page.next }))
  })

  return app
}

/** Why a confirmation form cannot go on: no reason, one too long, or not sent from the confirmation page. */
function confirmProblem(confirm: unknown, reason: string): string | undefined {
  if (!reason) return 'Give a reason: it is recorded in the history and the audit log.'
  if (reason.length > MAX_REASON) return `A reason is at most ${MAX_REASON} characters.`
  if (confirm !== 'yes') return 'Confirm with the button on this page.'
  return undefined
}
