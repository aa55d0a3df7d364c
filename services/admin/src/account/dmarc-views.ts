import { DMARC_DAYS, type DmarcDay, type DmarcDayDetail, type DmarcSource } from './dmarc.ts'
import { count, esc } from './html.ts'

// The DMARC page of a domain. Everything a report carries is a stranger's text (org names,
// reverse names, header_from): all of it goes through esc.

export function dmarcPage(opts: {
  domain: string
  path: string
  days: DmarcDay[]
  detail: DmarcDayDetail | null
  rua: string
}): string {
  const name = esc(opts.domain)
  const parts = [
    `<h1>DMARC reports for ${name}</h1>`,
    `<p><a href="${esc(opts.path.replace(/\/dmarc$/, ''))}">Back to ${name}</a></p>`,
    '<p>Receivers that honour your DMARC record send the pool a daily report of the mail they saw with ',
    `${name} in its From: which addresses sent it, whether it passed DKIM or SPF aligned with your domain, and what `,
    "they did with it. The pool's own addresses are listed apart: anything else is another service sending as you ",
    '(one you forgot to include, or someone spoofing you).',
    opts.rua ? ` Reports arrive when your DMARC record says <code>rua=mailto:${esc(opts.rua)}</code>.</p>` : '</p>',
  ]
  if (!opts.days.length) {
    parts.push(`<p class="empty">No report about ${name} over the last ${DMARC_DAYS} days.</p>`)
    return parts.join('')
  }
  parts.push(
    `<table class="figures-table dmarc-days"><caption>Messages reported per day (UTC), last ${DMARC_DAYS} days</caption>`,
    '<thead><tr><th scope="col">Day</th><th scope="col">Reports</th><th scope="col">From the pool</th>',
    '<th scope="col">From other addresses</th><th scope="col">Failing DMARC</th><th scope="col">of which not the pool</th></tr></thead><tbody>',
    ...opts.days.map((d) => {
      const current = opts.detail?.day === d.day
      const link = `<a href="${esc(opts.path)}?day=${esc(d.day)}"${current ? ' aria-current="page"' : ''}>${esc(d.day)}</a>`
      return (
        `<tr data-day="${esc(d.day)}"><th scope="row">${link}</th><td>${count(d.reports)}</td><td>${count(d.pool)}</td>` +
        `<td>${count(d.others)}</td><td>${count(d.failing)}</td><td>${count(d.othersFailing)}</td></tr>`
      )
    }),
    '</tbody></table>',
  )
  if (opts.detail) parts.push(dayDetail(opts.detail))
  return parts.join('')
}

function dayDetail(d: DmarcDayDetail): string {
  const reporters = d.reporters
    .map(
      (r) =>
        `<li>${esc(r.org)} (${count(r.reports)} report${r.reports === 1 ? '' : 's'}; ` +
        `${r.verified ? `sent by ${esc(r.verified)}, DMARC passed` : 'sender not authenticated'})</li>`,
    )
    .join('')
  return [
    `<h2>${esc(d.day)}</h2>`,
    `<p>Reported by:</p><ul class="dmarc-reporters">${reporters}</ul>`,
    sourceTable('dmarc-pool', 'From the pool', d.pool),
    sourceTable('dmarc-others', 'From other addresses', d.others),
  ].join('')
}

function sourceTable(id: string, title: string, group: { sources: DmarcSource[]; more: number }): string {
  if (!group.sources.length) return `<h3>${esc(title)}</h3><p class="empty" data-testid="${id}">None.</p>`
  const rows = group.sources
    .map(
      (s) =>
        `<tr><td><code>${esc(s.sourceIp)}</code></td><td>${esc(s.reverseName ?? '')}</td><td>${esc(s.headerFrom)}</td>` +
        `<td>${count(s.count)}</td><td>${esc(s.dkim)}</td><td>${esc(s.spf)}</td><td>${esc(s.disposition)}</td></tr>`,
    )
    .join('')
  return (
    `<h3>${esc(title)}</h3><table class="log-table" data-testid="${id}"><caption>${esc(title)}: top ${group.sources.length} by messages` +
    `${group.more ? `, ${count(group.more)} more not shown` : ''}</caption>` +
    '<thead><tr><th scope="col">Address</th><th scope="col">Reverse name (as its owner claims)</th><th scope="col">From</th>' +
    '<th scope="col">Messages</th><th scope="col">DKIM aligned</th><th scope="col">SPF aligned</th><th scope="col">Receiver did</th></tr></thead>' +
    `<tbody>${rows}</tbody></table>`
  )
}
