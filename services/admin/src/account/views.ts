import { type ChartSeries, PALETTE, renderChart } from './chart.ts'
import type { CountKey, Figures, FigureWindow, Series } from './figures.ts'
import { count, esc, utc } from './html.ts'
import type { LogEntry, LogForm, LogPage } from './message-log.ts'
import type { AccountStanding, DomainStanding } from './standing.ts'

/**
 * HTML fragments of the member's account for a page to embed: escaped strings, no script,
 * no style attribute (a CSP without unsafe-inline allows all of it). Classes the page's
 * stylesheet is expected to define: `visually-hidden` (off screen, still read aloud),
 * `outcome-pass|fail|temperror`, `state-<recipient state>`; the rest is decoration.
 */

const WINDOW_TITLES: Record<FigureWindow, string> = {
  '24h': 'the last 24 hours',
  '7d': 'the last 7 days',
  '30d': 'the last 30 days',
}

/** The chart's series: the recipient outcomes stacked (they add up to sent), complaints as a line. */
const CHART_SERIES: Array<ChartSeries & { key: CountKey }> = [
  { key: 'delivered', label: 'Delivered', kind: 'bar', colour: PALETTE.green },
  { key: 'deferred', label: 'Deferred now', kind: 'bar', colour: PALETTE.amber },
  { key: 'bounced', label: 'Bounced', kind: 'bar', colour: PALETTE.red },
  { key: 'queued', label: 'Queued', kind: 'bar', colour: PALETTE.grey },
  { key: 'failed', label: 'Stopped', kind: 'bar', colour: PALETTE.slate },
  { key: 'complained', label: 'Complained', kind: 'line', colour: PALETTE.purple },
]

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

function bucketLabel(start: Date, step: 'hour' | 'day'): string {
  return step === 'hour'
    ? `${String(start.getUTCHours()).padStart(2, '0')}:00`
    : `${start.getUTCDate()} ${MONTHS[start.getUTCMonth()]}`
}

/** One series (the member's or a domain's) as a chart and its table. */
export function seriesChart(figures: Figures, series: Series, opts: { id: string; subject: string }): string {
  const when = WINDOW_TITLES[figures.window]
  const t = series.total
  const { svg, table } = renderChart({
    id: opts.id,
    title: `Mail from ${opts.subject} over ${when}`,
    description:
      `${count(t.sent)} recipients accepted: ${count(t.delivered)} delivered, ${count(t.deferred)} deferred now, ` +
      `${count(t.bounced)} bounced, ${count(t.queued)} queued, ${count(t.failed)} stopped; ${count(t.complained)} complaints. ` +
      `By ${figures.step} (UTC), each recipient in the ${figures.step} it was accepted.`,
    categoryLabel: figures.step === 'hour' ? 'Hour (UTC)' : 'Day (UTC)',
    valueLabel: 'Recipients',
    categories: series.buckets.map((b) => bucketLabel(b.start, figures.step)),
    series: CHART_SERIES,
    values: CHART_SERIES.map((s) => series.buckets.map((b) => b.counts[s.key])),
    emptyText: `No mail over ${when}`,
  })
  return `<figure class="chart-figure">${svg}<figcaption class="visually-hidden">${table}</figcaption></figure>`
}

/**
 * The figures of one window: the member's chart, then a table of the totals per domain
 * (the member's line first), deferral attempts and unattributed complaints included.
 */
export function figuresFragment(
  figures: Figures,
  opts: { id?: string; perDomainCharts?: boolean; controls?: string } = {},
): string {
  const id = opts.id ?? `figures-${figures.window}`
  const when = WINDOW_TITLES[figures.window]
  const row = (name: string, s: Series, header = false) => {
    const t = s.total
    const cells = [t.sent, t.delivered, t.deferred, t.deferralAttempts, t.bounced, t.complained]
    return `<tr${header ? ' class="total"' : ''}><th scope="row">${esc(name)}</th>${cells.map((c) => `<td>${esc(count(c))}</td>`).join('')}</tr>`
  }
  const domainRows = figures.domains.map((d) => row(d.live ? d.domain : `${d.domain} (removed)`, d.series)).join('')
  const parts = [
    `<section class="account-figures" aria-labelledby="${esc(id)}-h">`,
    `<h2 id="${esc(id)}-h">Mail over ${esc(when)}</h2>`,
    // The page's own controls (a window switch), already HTML.
    opts.controls ?? '',
    seriesChart(figures, figures.member, { id: `${id}-all`, subject: 'all your domains' }),
    `<table class="figures-table"><caption>Totals over ${esc(when)}</caption>`,
    '<thead><tr><th scope="col">Domain</th><th scope="col">Sent</th><th scope="col">Delivered</th>',
    '<th scope="col">Deferred now</th><th scope="col">Deferral attempts</th><th scope="col">Bounced</th>',
    '<th scope="col">Complained</th></tr></thead>',
    `<tbody>${row('All domains', figures.member, true)}${domainRows}</tbody></table>`,
  ]
  if (figures.categories.some((c) => c.category !== null)) {
    const rows = figures.categories
      .map(({ category, total: t }) => {
        const cells = [t.sent, t.delivered, t.bounced, t.complained]
        const name = category === null ? '(no category)' : category
        return `<tr><th scope="row">${esc(name)}</th>${cells.map((c) => `<td>${esc(count(c))}</td>`).join('')}</tr>`
      })
      .join('')
    parts.push(
      `<table class="figures-table categories-table"><caption>By category (X-Atmos-Category) over ${esc(when)}</caption>`,
      '<thead><tr><th scope="col">Category</th><th scope="col">Sent</th><th scope="col">Delivered</th>',
      '<th scope="col">Bounced</th><th scope="col">Complained</th></tr></thead>',
      `<tbody>${rows}</tbody></table>`,
    )
  }
  if (figures.unattributedComplaints) {
    parts.push(
      `<p class="note">${esc(count(figures.unattributedComplaints))} complaint${figures.unattributedComplaints === 1 ? '' : 's'} ` +
        'over this time could not be tied to a message, so they appear in no bar or domain above.</p>',
    )
  }
  if (opts.perDomainCharts) {
    figures.domains.forEach((d, i) => {
      parts.push(seriesChart(figures, d.series, { id: `${id}-d${i}`, subject: d.domain }))
    })
  }
  parts.push('</section>')
  return parts.join('')
}

const STATE_WORDS: Record<LogEntry['state'], string> = {
  queued: 'Queued',
  delivered: 'Delivered',
  deferred: 'Deferred',
  bounced: 'Bounced',
  expired: 'Expired',
  failed: 'Stopped',
}

/**
 * The log with its search form (GET to `action`: nothing changes, so no CSRF token), and a
 * link to the next (older) page that keeps the search.
 */
export function messageLogFragment(
  page: LogPage,
  opts: { action: string; form: LogForm; domains: string[]; error?: string | undefined; id?: string },
): string {
  const id = opts.id ?? 'message-log'
  const f = opts.form
  const option = (value: string, label: string, selected: boolean) =>
    `<option value="${esc(value)}"${selected ? ' selected' : ''}>${esc(label)}</option>`
  const form = [
    `<form class="log-search" method="get" action="${esc(opts.action)}" role="search" aria-label="Search the message log">`,
    `<label for="${esc(id)}-field">Search by</label>`,
    `<select id="${esc(id)}-field" name="field">`,
    option('recipient', 'Recipient address', f.field === 'recipient'),
    option('messageId', 'Message-ID', f.field === 'messageId'),
    '</select>',
    `<label for="${esc(id)}-q">Search for</label>`,
    `<input id="${esc(id)}-q" name="q" type="search" maxlength="255" value="${esc(f.q)}" autocomplete="off"` +
      `${opts.error ? ` aria-invalid="true" aria-describedby="${esc(id)}-error"` : ''}>`,
    `<input id="${esc(id)}-prefix" name="prefix" type="checkbox" value="1"${f.prefix ? ' checked' : ''}>`,
    `<label for="${esc(id)}-prefix">Starts with (not the whole address or ID)</label>`,
    `<label for="${esc(id)}-domain">Sent as</label>`,
    `<select id="${esc(id)}-domain" name="domain">`,
    option('', 'Any of your domains', f.domain === ''),
    ...opts.domains.map((d) => option(d, d, d === f.domain)),
    '</select>',
    '<button type="submit">Search</button>',
    '</form>',
  ]
  if (opts.error) form.push(`<p id="${esc(id)}-error" class="form-error" role="alert">${esc(opts.error)}</p>`)
  const rows = page.entries.map(logRow).join('')
  const table = page.entries.length
    ? '<table class="log-table"><caption>Your messages over the last 30 days, newest first, one row a recipient</caption>' +
      '<thead><tr><th scope="col">Accepted</th><th scope="col">Recipient</th><th scope="col">Sent as</th>' +
      '<th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Last attempt</th>' +
      '<th scope="col">Last reply</th><th scope="col">Message-ID</th></tr></thead>' +
      `<tbody>${rows}</tbody></table>`
    : `<p class="empty">${f.q ? 'No message of the last 30 days matches this search.' : 'No messages over the last 30 days.'}</p>`
  let more = ''
  if (page.next) {
    const params = new URLSearchParams()
    if (f.q) params.set('field', f.field)
    if (f.q) params.set('q', f.q)
    if (f.q && f.prefix) params.set('prefix', '1')
    if (f.domain) params.set('domain', f.domain)
    params.set('after', page.next)
    more = `<p class="pager"><a rel="next" href="${esc(`${opts.action}?${params}`)}">Older messages</a></p>`
  }
  return `<section class="message-log" aria-labelledby="${esc(id)}-h"><h2 id="${esc(id)}-h">Message log</h2>${form.join('')}${table}${more}</section>`
}

function logRow(e: LogEntry): string {
  let state = STATE_WORDS[e.state]
  if (e.bouncedLater) state += ', then bounced'
  if (e.complained) state += ', complained'
  const next = e.state === 'deferred' && e.nextAttemptAt ? `; next try ${utc(e.nextAttemptAt)}` : ''
  return (
    '<tr>' +
    `<td><time datetime="${esc(e.receivedAt.toISOString())}">${esc(utc(e.receivedAt))}</time></td>` +
    `<td>${esc(e.recipient)}</td>` +
    `<td>${esc(e.domain ?? '')}</td>` +
    `<td class="state-${esc(e.state)}">${esc(state)}</td>` +
    `<td>${esc(e.attempts)}</td>` +
    `<td>${e.lastAttemptAt ? `<time datetime="${esc(e.lastAttemptAt.toISOString())}">${esc(utc(e.lastAttemptAt))}</time>` : ''}${esc(next)}</td>` +
    `<td class="reply">${esc(e.lastReply ?? '')}</td>` +
    `<td class="message-id">${esc(e.messageIdHeader ?? '')}</td>` +
    '</tr>'
  )
}

const OUTCOME_WORDS = { pass: 'Passed', fail: 'Failed', temperror: 'Temporary error, will retry' } as const
const CHECK_WORDS = {
  domain_control: 'Domain control',
  mx: 'MX',
  spf: 'SPF',
  dkim: 'DKIM',
  dmarc: 'DMARC',
} as const

/** One card a live domain: verification and its checks, warming and today's cap, suppressions. */
export function standingFragment(
  standing: AccountStanding,
  opts: { id?: string; actions?: (d: DomainStanding) => string } = {},
): string {
  const id = opts.id ?? 'standing'
  const cards = standing.domains.map((d, i) => domainCard(d, `${id}-${i}`, opts.actions?.(d) ?? '')).join('')
  return (
    `<section class="account-standing" aria-labelledby="${esc(id)}-h"><h2 id="${esc(id)}-h">Your domains</h2>` +
    `<p>Your suppression list holds ${esc(count(standing.suppressions))} address${standing.suppressions === 1 ? '' : 'es'} ` +
    '(for all your domains).</p>' +
    (cards || '<p class="empty">You have no sending domain yet.</p>') +
    '</section>'
  )
}

/** `actions`: HTML the page adds at the end of the card (links to the domain's own pages). */
function domainCard(d: DomainStanding, id: string, actions: string): string {
  const v = d.verification
  const rows: Array<[string, string]> = [
    ['Status', `${d.status}${d.statusReason ? ` (${d.statusReason})` : ''}`],
    ['Attestation', d.holds ? 'verified: you hold this domain' : 'not verified now'],
  ]
  if (v) {
    rows.push(['Last check', `${OUTCOME_WORDS[v.outcome]} at ${utc(v.lastRunAt)}`])
    if (v.temperrorSince) rows.push(['Temporary errors since', utc(v.temperrorSince)])
    if (v.nextDueAt) rows.push(['Next check due', utc(v.nextDueAt)])
  } else {
    rows.push(['Last check', 'not checked yet'])
  }
  const w = d.warming
  rows.push(
    ['Warming', w.day === null ? 'not started' : w.warming ? `day ${w.day + 1} of warming` : 'warm'],
    ["Today's cap", `${count(w.cap)} recipients`],
    ['Left today', `${count(w.left)} (${count(w.sentToday)} sent; the count starts again at ${utc(w.resetsAt)})`],
    ['Suppressions from its mail', count(d.suppressions)],
    ['Replies forwarded to', d.forwardTo ?? 'nowhere (not set)'],
  )
  const dl = rows.map(([k, val]) => `<dt>${esc(k)}</dt><dd>${esc(val)}</dd>`).join('')
  const checks = v?.checks.length
    ? `<h4>Checks of the last run</h4><ul class="checks">${v.checks
        .map(
          (c) =>
            `<li class="outcome-${esc(c.outcome)}"><strong>${esc(CHECK_WORDS[c.check] ?? c.check)}: ${esc(OUTCOME_WORDS[c.outcome] ?? c.outcome)}</strong>` +
            ` <span class="reason">${esc(c.reason)}</span>` +
            (c.warnings.length
              ? `<ul class="warnings">${c.warnings.map((x) => `<li>${esc(x)}</li>`).join('')}</ul>`
              : '') +
            '</li>',
        )
        .join('')}</ul>`
    : ''
  return `<section class="domain-card" aria-labelledby="${esc(id)}-h"><h3 id="${esc(id)}-h">${esc(d.domain)}</h3><dl>${dl}</dl>${checks}${actions}</section>`
}
