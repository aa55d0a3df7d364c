import type { Db } from '@atmos/db'
import { sql } from 'drizzle-orm'
import { count, esc, utc } from './html.ts'

// The member's side of the relay's throttle rules: when its domains were deferred (or, with a
// rule still on trial, would have been) and by how much, so that a member who sees 451 4.7.1
// in its MTA's queue, or is about to, knows why and what its limit is. Only its own rows.

/** How far back the account looks, and how many rows it shows at most. */
const DAYS = 14
const LIMIT = 20

export type ThrottledItem = {
  at: Date
  domain: string
  rule: string
  mode: string
  action: string
  figures: Record<string, unknown>
}

export async function throttledView(db: Db, memberId: number): Promise<ThrottledItem[]> {
  // Through throttle_decisions_member_idx (member_id, at).
  const rows = await db.execute<{
    at: string
    domain: string
    rule: string
    mode: string
    action: string
    figures: Record<string, unknown>
  }>(sql`
    select at::text, domain, rule, mode, action, figures from throttle_decisions
    where member_id = ${memberId} and at >= now() - make_interval(days => ${DAYS})
    order by at desc limit ${LIMIT}`)
  return rows.map((r) => ({ ...r, at: new Date(r.at) }))
}

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0)

/** The figures in the member's words, as the 451 said them. */
function what(i: ThrottledItem): string {
  const f = i.figures
  if (i.rule === 'spike') {
    return (
      `${count(num(f.recipients))} recipients in an hour, over a limit of ${count(num(f.limit))} ` +
      `(${num(f.factor)} × your busiest hour in ${num(f.historyDays)} days, ${count(num(f.peakHour))}; at least ${count(num(f.floor))})`
    )
  }
  return (
    `${count(num(f.domains))} distinct recipient domains among ${count(num(f.recipients))} recipients in an hour ` +
    `(at most ${count(num(f.maxDomains))} domains, or a ratio of ${num(f.maxRatio)}; yours ${num(f.ratio)})`
  )
}

export function throttledFragment(items: readonly ThrottledItem[]): string {
  const head =
    '<section class="throttled" aria-labelledby="throttled-h"><h2 id="throttled-h">Throttled</h2>' +
    `<p>Sudden volume against your own history (spike) and mail spread over many recipient domains (spray) are deferred with <code>451 4.7.1</code>, which your mail server retries; nothing is suspended for it. A rule on trial only notes what it would have deferred. Last ${DAYS} days, one line per rule and domain each interval.</p>`
  if (!items.length) return `${head}<p class="empty" data-testid="throttled-none">Nothing throttled.</p></section>`
  const rows = items
    .map(
      (i) =>
        `<tr><td>${esc(utc(i.at))}</td><td>${esc(i.domain)}</td><td>${esc(i.rule)}</td>` +
        `<td>${esc(i.action === 'deferred' ? 'deferred' : 'would have deferred (on trial)')}</td><td>${esc(what(i))}</td></tr>`,
    )
    .join('')
  return (
    `${head}<table class="figures" data-testid="throttled"><thead><tr><th scope="col">When</th><th scope="col">Domain</th>` +
    '<th scope="col">Rule</th><th scope="col">What happened</th><th scope="col">Figures</th></tr></thead>' +
    `<tbody>${rows}</tbody></table></section>`
  )
}
