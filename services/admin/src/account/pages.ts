import type { LabelsRead } from '../labels/query.ts'
import type { MemberSuppression } from '../member/suppressions.ts'
import { type CleanSenderView, cleanSenderFragment } from './clean-sender.ts'
import type { Figures, FigureWindow } from './figures.ts'
import { count, esc, utc } from './html.ts'
import type { OwnedLiveDomain } from './owner.ts'
import type { AccountStanding, DomainStanding } from './standing.ts'
import { type ThrottledItem, throttledFragment } from './throttled.ts'
import { figuresFragment, standingFragment } from './views.ts'

/**
 * The bodies of the member's account pages (/account and below), as HTML strings the routes
 * put in the shared layout. Everything interpolated goes through esc(): domains, addresses,
 * remote replies and label values come from strangers. No script, no style attribute; a
 * destructive button carries data-confirm (static/admin.js asks) or has a page of its own.
 */

/** Every POST form carries the session's CSRF token (web/csrf.ts refuses one without). */
const token = (csrf: string) => `<input type="hidden" name="_csrf" value="${esc(csrf)}">`

export const domainPath = (domain: string, rest = '') => `/account/domains/${encodeURIComponent(domain)}${rest}`

export const WINDOW_CHOICES: Array<[FigureWindow, string]> = [
  ['24h', '24 hours'],
  ['7d', '7 days'],
  ['30d', '30 days'],
]

const LABEL_WORDS: Record<string, string> = {
  'verified-mail-operator': 'an attestation of yours verifies: you run mail for a domain you control',
  'relay-member': 'you are a member in good standing: the pool relays your mail',
  'clean-sender': 'your mail over the last 30 days bounced and drew complaints well below the limits',
}

function when(text: string | null): string {
  if (!text) return ''
  const at = Date.parse(text)
  return Number.isFinite(at) ? utc(new Date(at)) : text
}

/** The account's labels as our labeler publishes them, each with its expiry; a labeler away shows why. */
export function labelsFragment(read: LabelsRead): string {
  const head = '<section class="account-labels" aria-labelledby="labels-h"><h2 id="labels-h">Labels</h2>'
  if (!read.ok) {
    return (
      `${head}<p class="note" role="status">Your labels cannot be shown now: ${esc(read.reason)}. ` +
      'Try again in a minute; the rest of this page does not depend on it.</p></section>'
    )
  }
  if (!read.labels.length) {
    return `${head}<p class="empty">The labeler publishes no label about your account now.</p></section>`
  }
  const items = read.labels
    .map(
      (l) =>
        `<li><strong><code>${esc(l.val)}</code></strong>${LABEL_WORDS[l.val] ? `: ${esc(LABEL_WORDS[l.val])}` : ''}. ` +
        `Since ${esc(when(l.cts))}; ${l.exp ? `expires ${esc(when(l.exp))} unless renewed` : 'does not expire'}.</li>`,
    )
    .join('')
  return `${head}<ul class="labels">${items}</ul></section>`
}

function windowSwitch(current: FigureWindow): string {
  const links = WINDOW_CHOICES.map(
    ([w, words]) =>
      `<li><a href="/account?window=${w}"${w === current ? ' aria-current="page"' : ''}>${esc(words)}</a></li>`,
  ).join('')
  return `<nav class="window-switch" aria-label="Time span of the figures"><ul>${links}</ul></nav>`
}

function domainActions(d: DomainStanding): string {
  const name = esc(d.domain)
  return (
    '<ul class="domain-actions">' +
    `<li><a href="${esc(domainPath(d.domain))}">Forwarding, SMTP password, removal of ${name}</a></li>` +
    `<li><a href="${esc(domainPath(d.domain, '/keys'))}">DKIM keys of ${name}</a></li>` +
    `<li><a href="${esc(domainPath(d.domain, '/api-key'))}">API key of ${name}</a></li>` +
    '</ul>'
  )
}

export type AccountOverview = {
  did: string
  handle: string | null
  signedInUntil: Date
  /** Null: the DID is not a member yet (no domain enrolled). */
  standing: AccountStanding | null
  labels: LabelsRead
  /** Null: not a member yet. */
  cleanSender: CleanSenderView | null
  /** The relay's throttle decisions on the member's domains; null: not a member yet. */
  throttled?: readonly ThrottledItem[] | null
  figures: Figures | null
  window: FigureWindow
  maxDomains: number
  csrf: string
  /** Webhook endpoints disabled after failing deliveries: the member is told here (and on /account/webhooks). */
  disabledWebhooks?: number | undefined
}

/** /account: who, the labels, each live domain, the figures of one window, links to the log and list. */
export function accountPage(o: AccountOverview): string {
  const s = o.standing
  const status = s ? `${s.status}${s.statusReason ? ` (${s.statusReason})` : ''}` : 'not a member yet'
  const live = s?.domains.length ?? 0
  const enrol =
    live < o.maxDomains
      ? `<p><a href="/enroll">${live ? 'Enrol another domain' : 'Enrol a mail domain'}</a></p>`
      : `<p class="note">You hold ${esc(count(live))} domains, the most one account may hold here; remove one to enrol another.</p>`
  const parts = [
    '<h1>Your account</h1>',
    '<dl class="facts">',
    `<dt>DID</dt><dd><code data-testid="did">${esc(o.did)}</code></dd>`,
    `<dt>Handle</dt><dd data-testid="handle">${esc(o.handle ?? 'not verified')}</dd>`,
    `<dt>Membership</dt><dd data-testid="status">${esc(status)}</dd>`,
    `<dt>Signed in until</dt><dd>${esc(utc(o.signedInUntil))}</dd>`,
    '</dl>',
    labelsFragment(o.labels),
  ]
  if (s) {
    parts.push(
      standingFragment(s, { actions: domainActions }),
      enrol,
      o.cleanSender ? cleanSenderFragment(o.cleanSender) : '',
      o.throttled ? throttledFragment(o.throttled) : '',
      '<ul class="account-links">',
      '<li><a href="/account/messages">Message log (30 days, by recipient or Message-ID)</a></li>',
      `<li><a href="/account/suppressions">Suppression list (${esc(count(s.suppressions))} address${s.suppressions === 1 ? '' : 'es'})</a></li>`,
      '<li><a href="/account/webhooks">Webhooks (events POSTed to your endpoints)</a></li>',
      '</ul>',
      o.disabledWebhooks
        ? `<p class="error" role="alert" data-testid="webhooks-disabled">Webhook endpoints disabled after their deliveries ` +
            `kept failing: ${esc(count(o.disabledWebhooks))}. <a href="/account/webhooks">See why, and enable them again</a>.</p>`
        : '',
    )
    if (o.figures) parts.push(figuresFragment(o.figures, { controls: windowSwitch(o.window) }))
  } else {
    parts.push(
      '<section class="account-standing" aria-labelledby="standing-h"><h2 id="standing-h">Your domains</h2>',
      '<p class="empty">You have no sending domain yet.</p>',
      enrol,
      '</section>',
    )
  }
  parts.push(
    '<h2>Sessions</h2>',
    `<form method="post" action="/signout-everywhere">${token(o.csrf)}`,
    '<button type="submit" data-confirm="Sign out of every browser?">Sign out everywhere</button></form>',
  )
  return parts.join('')
}

const REASON_WORDS: Record<MemberSuppression['reason'], string> = {
  hard_bounce: 'Hard bounce: the address does not exist',
  complaint: 'Complaint: the recipient marked your mail as spam',
  unsubscribe: 'Unsubscribed from your mail',
  manual: 'Added by a pool operator',
}

/** /account/suppressions: every standing entry, why, since and until when; a lift button where the member may. */
export function suppressionsPage(
  items: MemberSuppression[],
  opts: { csrf: string; mayLift: (s: MemberSuppression) => boolean; lifted?: string | undefined },
): string {
  const parts = [
    '<h1>Suppression list</h1>',
    '<p>Your mail is not sent to these addresses, from any of your domains. Lift an entry when you know the address ',
    'is good again (a mailbox fixed, a person who asked to hear from you). A complaint stays until a pool operator ',
    'lifts it: the recipient asked not to get your mail.</p>',
    '<p><a href="/account">Back to your account</a></p>',
  ]
  if (opts.lifted) parts.push(`<p class="notice" role="status">${esc(opts.lifted)} was lifted from the list.</p>`)
  if (!items.length) {
    parts.push('<p class="empty">Your suppression list is empty.</p>')
    return parts.join('')
  }
  const rows = items
    .map((s) => {
      const action = opts.mayLift(s)
        ? `<form method="post" action="/account/suppressions/lift" class="inline">${token(opts.csrf)}` +
          `<input type="hidden" name="address" value="${esc(s.address)}">` +
          `<button type="submit" data-confirm="${esc(`Send mail to ${s.address} again?`)}">Lift ${esc(s.address)}</button></form>`
        : '<span class="note">Only a pool operator can lift a complaint</span>'
      return (
        `<tr><th scope="row">${esc(s.address)}</th>` +
        `<td>${esc(REASON_WORDS[s.reason] ?? s.reason)}${s.detail ? `<br><span class="detail">${esc(s.detail)}</span>` : ''}</td>` +
        `<td>${esc(s.domain ?? '')}</td>` +
        `<td><time datetime="${esc(s.since.toISOString())}">${esc(utc(s.since))}</time></td>` +
        `<td>${s.expiresAt ? `<time datetime="${esc(s.expiresAt.toISOString())}">${esc(utc(s.expiresAt))}</time>` : 'for good'}</td>` +
        `<td>${action}</td></tr>`
      )
    })
    .join('')
  parts.push(
    `<table class="suppressions-table"><caption>${esc(count(items.length))} suppressed address${items.length === 1 ? '' : 'es'}, oldest first</caption>`,
    '<thead><tr><th scope="col">Address</th><th scope="col">Why</th><th scope="col">From the mail of</th>',
    '<th scope="col">Since</th><th scope="col">Until</th><th scope="col">Lift</th></tr></thead>',
    `<tbody>${rows}</tbody></table>`,
  )
  return parts.join('')
}

/** /account/domains/:domain: forward-to, the SMTP password, links to keys and API key, removal. */
export function domainPage(
  d: OwnedLiveDomain,
  opts: {
    csrf: string
    forwardError?: string | undefined
    forwardValue?: string | undefined
    notice?: string
    /** The recent forwards section (account/forwards.ts), when the caller read them. */
    forwards?: string | undefined
  },
): string {
  const name = esc(d.domain)
  const value = opts.forwardValue ?? d.forwardTo ?? ''
  const invalid = opts.forwardError ? ' aria-invalid="true" aria-describedby="forward-help forward-error"' : ''
  const parts = [
    `<h1>${name}</h1>`,
    '<p><a href="/account">Back to your account</a></p>',
    opts.notice ? `<p class="notice" role="status">${esc(opts.notice)}</p>` : '',
    `<dl class="facts"><dt>Status</dt><dd>${esc(d.status)}</dd>`,
    `<dt>Replies forwarded to</dt><dd data-testid="forward-to">${esc(d.forwardTo ?? 'nowhere (not set)')}</dd></dl>`,
    '<h2>Forward replies</h2>',
    `<form method="post" action="${esc(domainPath(d.domain, '/forward-to'))}">${token(opts.csrf)}`,
    '<label for="forward-to">Forward replies to this address</label>',
    `<input id="forward-to" name="forward_to" type="email" maxlength="254" autocomplete="email" value="${esc(value)}"` +
      `${invalid || ' aria-describedby="forward-help"'}>`,
    `<p id="forward-help" class="help">One plain address, such as you@example.org, not at ${name} itself.</p>`,
    opts.forwardError ? `<p id="forward-error" class="error" role="alert">${esc(opts.forwardError)}</p>` : '',
    '<button type="submit">Save the address</button></form>',
  ]
  if (d.forwardTo) {
    parts.push(
      `<form method="post" action="${esc(domainPath(d.domain, '/forward-to'))}">${token(opts.csrf)}`,
      '<input type="hidden" name="clear" value="1">',
      `<button type="submit" data-confirm="${esc(`Stop forwarding replies to ${d.forwardTo}?`)}">Stop forwarding</button></form>`,
    )
  }
  if (opts.forwards) parts.push(opts.forwards)
  parts.push(
    '<h2>SMTP password</h2>',
    `<p>The relay credential of ${name} (username <code>${name}</code>). A new password is shown once; the current `,
    'one stops working at once, so update your PDS or application right after.</p>',
    `<form method="post" action="${esc(domainPath(d.domain, '/credential'))}">${token(opts.csrf)}`,
    `<button type="submit" data-confirm="${esc(`The current password of ${d.domain} stops working at once. Issue a new one?`)}">`,
    'Issue a new password</button></form>',
    '<h2>Keys</h2>',
    '<ul>',
    `<li><a href="${esc(domainPath(d.domain, '/keys'))}">DKIM keys of ${name}</a></li>`,
    `<li><a href="${esc(domainPath(d.domain, '/api-key'))}">API key of ${name}</a></li>`,
    '</ul>',
    '<h2>Who sends as this domain</h2>',
    `<p><a href="${esc(domainPath(d.domain, '/dmarc'))}">DMARC reports for ${name}</a>: per day, every address receivers `,
    "saw sending as it, the pool's apart from everyone else's, with their DKIM and SPF alignment.</p>",
    '<h2>Remove this domain</h2>',
    `<p>The pool stops sending as ${name}: its password and keys stop working, and the labeler is told.</p>`,
    `<p><a href="${esc(domainPath(d.domain, '/remove'))}">Remove ${name}…</a></p>`,
  )
  return parts.join('')
}

/** The confirmation of a removal: the member types the domain's name. */
export function removeConfirmPage(domain: string, opts: { csrf: string; error?: string | undefined }): string {
  const name = esc(domain)
  const invalid = opts.error ? ' aria-invalid="true" aria-describedby="confirm-help confirm-error"' : ''
  return [
    `<h1>Remove ${name}</h1>`,
    `<p>Removing ${name} cannot be undone from this page. At once:</p>`,
    '<ul>',
    `<li>the relay refuses mail from ${name}, and its SMTP password stops working;</li>`,
    '<li>its DKIM keys are retired;</li>',
    '<li>the labeler is told, and recomputes your labels.</li>',
    '</ul>',
    '<p>Mail already sent stays in your message log, and your suppression list stays yours. To send as it again, ',
    'enrol it again.</p>',
    `<form method="post" action="${esc(domainPath(domain, '/remove'))}">${token(opts.csrf)}`,
    '<label for="confirm-domain">Type the domain name to confirm</label>',
    `<input id="confirm-domain" name="confirm" type="text" autocomplete="off" spellcheck="false" maxlength="253"` +
      `${invalid || ' aria-describedby="confirm-help"'}>`,
    `<p id="confirm-help" class="help">Type ${name}.</p>`,
    opts.error ? `<p id="confirm-error" class="error" role="alert">${esc(opts.error)}</p>` : '',
    `<button type="submit">Remove ${name}</button></form>`,
    `<p><a href="${esc(domainPath(domain))}">Keep ${name}</a></p>`,
  ].join('')
}

export function removedPage(domain: string, announced: boolean): string {
  return [
    `<h1>${esc(domain)} removed</h1>`,
    `<p>The relay no longer sends as ${esc(domain)}; its password and keys stopped working.</p>`,
    announced
      ? '<p>The labeler was told and recomputes your labels.</p>'
      : '<p>The labeler will be told shortly (the pool retries on its own).</p>',
    '<p><a href="/account">Back to your account</a></p>',
  ].join('')
}
