import type { Reputation, Thresholds } from '@atmos/reputation'
import { type ChartSeries, PALETTE, renderChart } from '../account/chart.ts'
import type { FigureWindow } from '../account/figures.ts'
import { count, esc, utc } from '../account/html.ts'
import type { AccountStanding } from '../account/standing.ts'
import type { MemberSuppression } from '../member/suppressions.ts'
import type { MemberView } from '../operator/member.ts'
import type { ThrottleDecisionItem } from '../operator/throttle-decisions.ts'
import type { AuditFilter, AuditRow } from './audit.ts'
import type { FeedbackRow, MemberRow, StatusChange } from './members.ts'
import type { PoolVolume, QueueDepth, SiteRate } from './pool.ts'

/**
 * The operator console's pages as escaped HTML strings (the account's conventions: `esc` on
 * every value, no inline script or style). Each page starts with the console's own nav.
 */

const when = (d: Date | null | undefined) => (d ? `<time datetime="${esc(d.toISOString())}">${esc(utc(d))}</time>` : '')

const pct = (n: number, of: number) => (of ? `${((n / of) * 100).toFixed(1)} %` : '—')

const rate = (r: number) => `${(r * 100).toFixed(r < 0.01 ? 2 : 1)} %`

export const memberPath = (did: string, rest = '') => `/operator/members/${encodeURIComponent(did)}${rest}`

export function consoleNav(current: 'pool' | 'members' | 'audit'): string {
  const link = (href: string, key: typeof current, label: string) =>
    `<li><a href="${href}"${key === current ? ' aria-current="page"' : ''}>${label}</a></li>`
  return (
    '<nav aria-label="Operator console" class="window-switch"><ul>' +
    link('/operator', 'pool', 'Pool') +
    link('/operator/members', 'members', 'Members') +
    link('/operator/audit', 'audit', 'Audit log') +
    '</ul></nav>'
  )
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const WINDOW_WORDS: Record<FigureWindow, string> = {
  '24h': 'the last 24 hours',
  '7d': 'the last 7 days',
  '30d': 'the last 30 days',
}

const POOL_SERIES: Array<ChartSeries & { key: 'delivered' | 'deferred' | 'bounced' | 'complained' }> = [
  { key: 'delivered', label: 'Delivered', kind: 'bar', colour: PALETTE.green },
  { key: 'deferred', label: 'Deferred', kind: 'bar', colour: PALETTE.amber },
  { key: 'bounced', label: 'Bounced', kind: 'bar', colour: PALETTE.red },
  { key: 'complained', label: 'Complained', kind: 'line', colour: PALETTE.purple },
]

export function poolPage(input: {
  window: FigureWindow
  volume: PoolVolume
  sites24h: SiteRate[]
  sites7d: SiteRate[]
  queues: QueueDepth[] | null
  labelHead: { seq: number; at: Date } | null
}): string {
  const { volume, window } = input
  const step = window === '24h' ? 'hour' : 'day'
  const totals = { delivered: 0, deferred: 0, bounced: 0, complained: 0 }
  for (const b of volume.buckets) for (const k of POOL_SERIES) totals[k.key] += b.counts[k.key]
  const sent = totals.delivered + totals.deferred + totals.bounced
  const { svg, table } = renderChart({
    id: 'pool-volume',
    title: `The pool's delivery attempts over ${WINDOW_WORDS[window]}`,
    description:
      `${count(sent)} attempts: ${count(totals.delivered)} delivered, ${count(totals.deferred)} deferred, ` +
      `${count(totals.bounced)} bounced; ${count(totals.complained)} complaints. By ${step} (UTC).`,
    categoryLabel: step === 'hour' ? 'Hour (UTC)' : 'Day (UTC)',
    valueLabel: 'Attempts',
    categories: volume.buckets.map((b) =>
      step === 'hour'
        ? `${String(b.start.getUTCHours()).padStart(2, '0')}:00`
        : `${b.start.getUTCDate()} ${MONTHS[b.start.getUTCMonth()]}`,
    ),
    series: POOL_SERIES,
    values: POOL_SERIES.map((s) => volume.buckets.map((b) => b.counts[s.key])),
    emptyText: `No delivery attempts over ${WINDOW_WORDS[window]}`,
  })
  const windows = (['24h', '7d', '30d'] as const)
    .map(
      (w) =>
        `<li><a href="/operator?window=${w}"${w === window ? ' aria-current="page"' : ''}>${esc(WINDOW_WORDS[w])}</a></li>`,
    )
    .join('')
  const siteRows = (rows: SiteRate[]) =>
    rows
      .map(
        (r) =>
          `<tr><th scope="row">${esc(r.site)}</th><td>${esc(count(r.attempts))}</td>` +
          `<td>${esc(pct(r.deferred, r.attempts))}</td><td>${esc(pct(r.bounced, r.attempts))}</td></tr>`,
      )
      .join('')
  const siteTable = (caption: string, rows: SiteRate[]) =>
    `<table class="figures-table"><caption>${esc(caption)}</caption><thead><tr><th scope="col">Site</th>` +
    '<th scope="col">Attempts</th><th scope="col">Deferral rate</th><th scope="col">Bounce rate</th></tr></thead>' +
    `<tbody>${siteRows(rows)}</tbody></table>`
  const queues = input.queues
    ? '<table class="figures-table"><caption>Queues</caption><thead><tr><th scope="col">Queue</th>' +
      '<th scope="col">Waiting</th><th scope="col">Active</th><th scope="col">Delayed</th><th scope="col">Failed</th>' +
      '<th scope="col">Oldest waiting since</th></tr></thead><tbody>' +
      input.queues
        .map(
          (q) =>
            `<tr><th scope="row">${esc(q.name)}</th><td>${esc(count(q.waiting))}</td><td>${esc(count(q.active))}</td>` +
            `<td>${esc(count(q.delayed))}</td><td>${esc(count(q.failed))}</td><td>${q.oldestWaiting ? when(q.oldestWaiting) : 'none waiting'}</td></tr>`,
        )
        .join('') +
      '</tbody></table>'
    : '<p class="error" role="alert">The queues are unavailable: Redis did not answer in time.</p>'
  const head = input.labelHead
    ? `<p>Label stream head: sequence <strong>${esc(count(input.labelHead.seq))}</strong>, written ${when(input.labelHead.at)}.</p>`
    : '<p>The label stream is empty.</p>'
  return [
    '<h1>The pool</h1>',
    consoleNav('pool'),
    '<h2>Volume</h2>',
    `<nav aria-label="Time span" class="window-switch"><ul>${windows}</ul></nav>`,
    `<figure class="chart-figure">${svg}<figcaption class="visually-hidden">${table}</figcaption></figure>`,
    '<h2>By recipient site</h2>',
    siteTable('Delivery attempts by recipient site, last 24 hours', input.sites24h),
    siteTable('Delivery attempts by recipient site, last 7 days', input.sites7d),
    '<h2>Queues</h2>',
    queues,
    '<h2>Labels</h2>',
    head,
  ].join('')
}

export type MemberSummary = {
  row: MemberRow
  labels: string[]
  standing: AccountStanding | null
  reputation: Reputation
}

function thresholdsNote(t: Thresholds): string {
  return (
    `<p class="help">Thresholds: complaints warn at ${esc(rate(t.complaintWarn))}, suspend at ${esc(rate(t.complaintSuspend))}; ` +
    `bounces warn at ${esc(rate(t.bounceWarn))}, suspend at ${esc(rate(t.bounceSuspend))}; ` +
    `a window counts from ${esc(count(t.minVolume))} messages.</p>`
  )
}

function rateCell(r: Reputation, w: '24h' | '7d'): string {
  const f = r.windows[w]
  const level = f.counted ? f.level : 'too few to count'
  return `<td>${esc(rate(f.complaintRate))} / ${esc(rate(f.bounceRate))}<br><span class="note">${esc(level)}</span></td>`
}

function warmingCell(s: AccountStanding | null): string {
  return `<td>${warmingList(s)}</td>`
}

/** Each live domain's warming day and today's cap use, one line a domain. */
function warmingList(s: AccountStanding | null): string {
  if (!s?.domains.length) return 'no domain'
  return s.domains
    .map((d) => {
      const w = d.warming
      const tier = w.day === null ? 'never active' : w.warming ? `warming, day ${w.day}` : 'warmed'
      return `${esc(d.domain)}: ${esc(tier)}, ${esc(count(w.sentToday))} of ${esc(count(w.cap))} today`
    })
    .join('<br>')
}

export function membersPage(input: {
  q: string
  items: MemberSummary[]
  next: number | null
  thresholds: Thresholds
}): string {
  const rows = input.items
    .map(
      (m) =>
        `<tr><th scope="row"><a href="${esc(memberPath(m.row.did))}">${esc(m.row.handle ?? m.row.did)}</a>` +
        `${m.row.handle ? `<br><code>${esc(m.row.did)}</code>` : ''}</th>` +
        `<td>${esc(m.row.status)}${m.row.statusReason ? `<br><span class="note">${esc(m.row.statusReason)}</span>` : ''}</td>` +
        `<td>${esc(m.labels.join(', ') || 'none')}</td>` +
        warmingCell(m.standing) +
        rateCell(m.reputation, '24h') +
        rateCell(m.reputation, '7d') +
        `<td>${esc(m.reputation.level)}</td></tr>`,
    )
    .join('')
  const next =
    input.next !== null
      ? `<p><a href="/operator/members?${esc(new URLSearchParams({ q: input.q, before: String(input.next) }).toString())}">Older members</a></p>`
      : ''
  return [
    '<h1>Members</h1>',
    consoleNav('members'),
    '<form class="log-search" method="get" action="/operator/members" role="search" aria-label="Search members">',
    '<label for="member-q">DID, handle or domain</label>',
    `<input id="member-q" name="q" type="search" maxlength="2048" value="${esc(input.q)}" autocomplete="off">`,
    '<button type="submit">Search</button></form>',
    thresholdsNote(input.thresholds),
    input.items.length
      ? '<table class="log-table"><caption>Members, newest first</caption><thead><tr><th scope="col">Member</th>' +
        '<th scope="col">Status</th><th scope="col">Labels</th><th scope="col">Warming and cap use</th>' +
        '<th scope="col">24 h complaints / bounces</th><th scope="col">7 d complaints / bounces</th>' +
        `<th scope="col">Level</th></tr></thead><tbody>${rows}</tbody></table>`
      : '<p class="empty">No member matches.</p>',
    next,
  ].join('')
}

const table = (caption: string, head: string[], rows: string[], empty: string) =>
  rows.length
    ? `<table class="log-table"><caption>${esc(caption)}</caption><thead><tr>${head
        .map((h) => `<th scope="col">${esc(h)}</th>`)
        .join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`
    : `<h3>${esc(caption)}</h3><p class="empty">${esc(empty)}</p>`

export function memberPage(input: {
  member: MemberView
  labels: string[]
  standing: AccountStanding | null
  reputation: Reputation
  thresholds: Thresholds
  changes: StatusChange[]
  feedback: FeedbackRow[]
  throttle: ThrottleDecisionItem[]
  suppressions: MemberSuppression[]
  notice?: string | undefined
}): string {
  const m = input.member
  const action =
    m.status === 'suspended'
      ? `<a href="${esc(memberPath(m.did, '/status?to=active'))}">Reinstate this member</a>`
      : `<a href="${esc(memberPath(m.did, '/status?to=suspended'))}">Suspend this member</a>`
  const domainAction = (d: MemberView['domains'][number]) => {
    if (d.removedAt) return ''
    const to = d.status === 'suspended' ? 'active' : 'suspended'
    const path = memberPath(m.did, `/domains/${encodeURIComponent(d.domain)}/status?to=${to}`)
    return `<a href="${esc(path)}">${to === 'active' ? 'Reinstate' : 'Suspend'}<span class="visually-hidden"> ${esc(d.domain)}</span></a>`
  }
  const domains = [...m.domains, ...m.removedDomains].map(
    (d) =>
      `<tr><th scope="row">${esc(d.domain)}</th><td>${esc(d.removedAt ? `removed: ${d.removedReason ?? ''}` : d.status)}</td>` +
      `<td>${esc(d.statusReason ?? '')}</td><td>${domainAction(d)}</td></tr>`,
  )
  const changes = input.changes.map(
    (c) =>
      `<tr><td>${when(c.at)}</td><td>${esc(c.domain ?? 'member')}</td><td>${esc(c.from ?? '')} → ${esc(c.to)}</td>` +
      `<td>${esc(c.reason)}</td><td>${esc(c.actor)}</td></tr>`,
  )
  const feedback = input.feedback.map(
    (f) =>
      `<tr><td>${when(f.at)}</td><td>${esc(f.type)}</td><td>${esc(f.recipient ?? '')}</td><td>${esc(f.source)}</td>` +
      `<td>${esc(f.status ?? '')}</td><td>${f.counted ? 'yes' : 'no'}</td></tr>`,
  )
  const throttle = input.throttle.map(
    (t) =>
      `<tr><td>${esc(utc(new Date(t.at)))}</td><td>${esc(t.domain)}</td><td>${esc(t.rule)}</td><td>${esc(t.mode)}</td>` +
      `<td>${esc(t.action)}</td><td><code>${esc(JSON.stringify(t.figures).slice(0, 300))}</code></td></tr>`,
  )
  const suppressions = input.suppressions.map(
    (s) =>
      `<tr><th scope="row">${esc(s.address)}</th><td>${esc(s.reason)}</td><td>${esc(s.domain ?? '')}</td><td>${when(s.since)}</td>` +
      `<td><a href="${esc(memberPath(m.did, `/suppressions/lift?${new URLSearchParams({ address: s.address })}`))}">Lift<span class="visually-hidden"> ${esc(s.address)}</span></a></td></tr>`,
  )
  const r = input.reputation
  return [
    `<h1>${esc(m.handle ?? m.did)}</h1>`,
    consoleNav('members'),
    input.notice ? `<p class="notice" role="status">${esc(input.notice)}</p>` : '',
    '<dl>',
    `<dt>DID</dt><dd><code>${esc(m.did)}</code></dd>`,
    `<dt>Status</dt><dd>${esc(m.status)}${m.statusReason ? `: ${esc(m.statusReason)}` : ''}</dd>`,
    `<dt>Enrolled</dt><dd>${esc(m.enrolledAt)}</dd>`,
    `<dt>Labels</dt><dd>${esc(input.labels.join(', ') || 'none')}</dd>`,
    `<dt>Reputation</dt><dd>${esc(r.level)}${r.reasons.length ? `: ${esc(r.reasons.join('; '))}` : ''}</dd>`,
    `<dt>24 h complaints / bounces</dt><dd>${esc(rate(r.windows['24h'].complaintRate))} / ${esc(rate(r.windows['24h'].bounceRate))}</dd>`,
    `<dt>7 d complaints / bounces</dt><dd>${esc(rate(r.windows['7d'].complaintRate))} / ${esc(rate(r.windows['7d'].bounceRate))}</dd>`,
    '</dl>',
    thresholdsNote(input.thresholds),
    `<p class="account-links">${action} · <a href="${esc(memberPath(m.did, '/messages'))}">Message log</a> · ` +
      `<a href="/operator/audit?${esc(new URLSearchParams({ did: m.did }).toString())}">Audit log of this member</a></p>`,
    '<h2>Domains</h2>',
    table('Domains', ['Domain', 'Status', 'Why', 'Action'], domains, 'No domain.'),
    '<h2>Warming and cap use</h2>',
    `<p>${warmingList(input.standing)}</p>`,
    '<h2>History</h2>',
    table('Recent status changes', ['When', 'Of', 'Change', 'Why', 'By'], changes, 'No status change yet.'),
    table(
      'Recent feedback events',
      ['When', 'Type', 'Recipient', 'Source', 'Status', 'Counted'],
      feedback,
      'No feedback event.',
    ),
    table(
      'Recent throttle decisions',
      ['When', 'Domain', 'Rule', 'Mode', 'Action', 'Figures'],
      throttle,
      'No throttle decision.',
    ),
    '<h2>Suppressions</h2>',
    table('Standing suppressions', ['Address', 'Why', 'From the mail of', 'Since', 'Lift'], suppressions, 'None.'),
  ].join('')
}

/** The confirmation step of a status change: the reason is required, and the button names the act. */
export function statusConfirmPage(input: {
  did: string
  /** A domain of the member: the change is to that domain alone. */
  domain?: string | undefined
  to: 'active' | 'suspended'
  csrf: string
  error?: string | undefined
  reason?: string | undefined
}): string {
  const verb = input.to === 'suspended' ? 'Suspend' : 'Reinstate'
  const effect = input.domain
    ? input.to === 'suspended'
      ? `The relay refuses mail from ${input.domain} at once; the member's other domains go on sending.`
      : `The relay admits mail from ${input.domain} again.`
    : input.to === 'suspended'
      ? 'The relay refuses its mail at once and the labeler negates relay-member.'
      : 'The relay admits its mail again and the labeler re-issues relay-member.'
  return confirmForm({
    title: `${verb} ${input.domain ?? input.did}?`,
    effect,
    action: memberPath(input.did, input.domain ? `/domains/${encodeURIComponent(input.domain)}/status` : '/status'),
    csrf: input.csrf,
    hidden: { to: input.to },
    button: input.domain ? `${verb} ${input.domain}` : `${verb} this member`,
    back: memberPath(input.did),
    error: input.error,
    reason: input.reason,
  })
}

export function liftConfirmPage(input: {
  did: string
  address: string
  suppressed: string
  csrf: string
  error?: string | undefined
  reason?: string | undefined
}): string {
  return confirmForm({
    title: `Lift ${input.address}?`,
    effect: `${input.address} is on the list for: ${input.suppressed}. Lifted, the member's mail goes to it again.`,
    action: memberPath(input.did, '/suppressions/lift'),
    csrf: input.csrf,
    hidden: { address: input.address },
    button: 'Lift the suppression',
    back: memberPath(input.did),
    error: input.error,
    reason: input.reason,
  })
}

function confirmForm(input: {
  title: string
  effect: string
  action: string
  csrf: string
  hidden: Record<string, string>
  button: string
  back: string
  error?: string | undefined
  reason?: string | undefined
}): string {
  const invalid = input.error ? ' aria-invalid="true" aria-describedby="reason-error"' : ''
  return [
    `<h1>${esc(input.title)}</h1>`,
    `<p>${esc(input.effect)}</p>`,
    input.error ? `<p class="error" id="reason-error" role="alert">${esc(input.error)}</p>` : '',
    `<form method="post" action="${esc(input.action)}">`,
    `<input type="hidden" name="_csrf" value="${esc(input.csrf)}">`,
    ...Object.entries(input.hidden).map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`),
    '<input type="hidden" name="confirm" value="yes">',
    '<label for="reason">Reason (recorded in the history and the audit log)</label>',
    `<textarea id="reason" name="reason" required maxlength="1000" rows="3"${invalid}>${esc(input.reason ?? '')}</textarea>`,
    `<p><button type="submit">${esc(input.button)}</button> <a href="${esc(input.back)}">Cancel</a></p>`,
    '</form>',
  ].join('')
}

export function auditPageView(input: { filter: AuditFilter; items: AuditRow[]; next: number | null }): string {
  const f = input.filter
  const field = (name: 'actor' | 'did' | 'action', label: string) =>
    `<label for="audit-${name}">${esc(label)}</label>` +
    `<input id="audit-${name}" name="${name}" type="search" maxlength="2100" value="${esc(f[name] ?? '')}" autocomplete="off">`
  const rows = input.items.map(
    (a) =>
      `<tr><td>${when(a.at)}</td><td>${esc(a.actor)}</td><td>${esc(a.action)}</td>` +
      `<td>${a.did ? `<a href="${esc(memberPath(a.did))}">${esc(a.did)}</a>` : ''}</td><td>${esc(a.domain ?? '')}</td>` +
      `<td><code>${esc(JSON.stringify(a.detail ?? null).slice(0, 500))}</code></td></tr>`,
  )
  const keep = Object.fromEntries(
    Object.entries({ actor: f.actor, did: f.did, action: f.action }).filter(([, v]) => v),
  ) as Record<string, string>
  const next =
    input.next !== null
      ? `<p><a href="/operator/audit?${esc(new URLSearchParams({ ...keep, before: String(input.next) }).toString())}">Older entries</a></p>`
      : ''
  return [
    '<h1>Audit log</h1>',
    consoleNav('audit'),
    '<form class="log-search" method="get" action="/operator/audit" role="search" aria-label="Filter the audit log">',
    field('actor', 'Actor (exact, e.g. admin:did:plc:…)'),
    field('did', 'Member DID'),
    field('action', 'Action (e.g. member.suspended)'),
    '<button type="submit">Filter</button></form>',
    table(
      'Audit log, newest first',
      ['When', 'Actor', 'Action', 'Member', 'Domain', 'Detail'],
      rows,
      'No entry matches.',
    ),
    next,
  ].join('')
}
