import type { CheckNowResult, SeenRecord } from './check.ts'
import type { Control } from './control.ts'
import type { SmtpSettings } from './credentials.ts'
import type { EnrolmentProgress } from './progress.ts'
import type { DnsRecordToPublish } from './records.ts'
import type { WatchStage, WatchState } from './watch.ts'
import type { DomainRecords } from './wizard.ts'

// A minimal local template for the wizard's pages; the lead switches them to the shared
// layout when merging. Everything interpolated goes through esc(): DNS data, domains and
// reasons are hostile.

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!)
}

/** The page's own part; the routes put it in the shared layout (web/layout.ts). */
export function page(title: string, body: string): string {
  return `<h1>${esc(title)}</h1>\n${body}`
}

/** Every POST form carries the session's CSRF token (web/csrf.ts refuses one without). */
const token = (csrf: string) => `<input type="hidden" name="_csrf" value="${esc(csrf)}">`

const action = (path: string, label: string, csrf: string) =>
  `<form method="post" action="${esc(path)}">${token(csrf)}<button type="submit">${esc(label)}</button></form>`

export function domainForm(csrf: string, error?: string): string {
  return page(
    'Enrol a mail domain',
    `${error ? `<p role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/enroll/domain">${token(csrf)}
<label for="domain">Mail domain</label>
<input id="domain" name="domain" required autocomplete="off" spellcheck="false">
<button type="submit">Continue</button>
</form>`,
  )
}

function controlText(control: Control): string {
  return `<p>${esc(control.reason)}</p>`
}

/** One record to publish as the member's DNS provider asks for it and as its zone-file line. */
export function recordBlock(rec: DnsRecordToPublish, heading = 'h2', title = rec.purpose.toUpperCase()): string {
  return `<section>
<${heading}>${esc(title)}${rec.required ? '' : ' (optional)'}</${heading}>
<p>${esc(rec.note)}</p>
<dl><dt>Name</dt><dd><code>${esc(rec.name)}</code></dd><dt>Type</dt><dd>${esc(rec.type)}</dd>
<dt>Value</dt><dd><code data-copy-label="${esc(`${rec.type} value of ${rec.name}`)}">${esc(rec.value)}</code></dd></dl>
<p>Zone-file line:</p><pre data-copy-label="${esc(`zone-file line of ${rec.name}`)}">${esc(rec.zoneLine)}</pre>
</section>`
}

/** What DNS holds now at each record's name (check now's second table). */
export function seenTable(records: SeenRecord[]): string {
  const seen = records
    .map(
      (s) => `<tr><th scope="row"><code>${esc(s.name)}</code> ${esc(s.type)}</th><td>${esc(s.state)}</td>
<td>${s.seen.length ? s.seen.map((v) => `<code>${esc(v)}</code>`).join('<br>') : '(nothing)'}</td><td>${esc(s.hint)}</td></tr>`,
    )
    .join('\n')
  return `<table><caption>What DNS holds now</caption><thead><tr><th scope="col">Record</th><th scope="col">State</th><th scope="col">Seen</th><th scope="col">Note</th></tr></thead>
<tbody>${seen}</tbody></table>`
}

export function recordsPage(r: DomainRecords, csrf: string): string {
  const base = `/enroll/${encodeURIComponent(r.domain)}`
  const spf = r.spf.ok
    ? r.spf.warnings.map((w) => `<p class="warning">${esc(w)}</p>`).join('')
    : `<p role="alert">SPF: ${esc(r.spf.reason)}</p>`
  const rows = r.records.map((rec) => recordBlock(rec)).join('\n')
  return page(
    `DNS records for ${r.domain}`,
    `<p>Domain status: ${esc(r.status)}</p>
${controlText(r.control)}
${spf}
${rows}
${action(`${base}/check`, 'Check now', csrf)}`,
  )
}

const OUTCOME_TEXT = { pass: 'pass', fail: 'fail', 'try-again': 'try again' } as const

export function checkPage(r: CheckNowResult & { domain: string }, csrf: string): string {
  const checks = r.checks
    .map(
      (c) =>
        `<tr><th scope="row">${esc(c.check)}</th><td>${esc(OUTCOME_TEXT[c.outcome])}</td><td>${esc(c.reason)}${
          c.fix ? `<br>How to fix: ${esc(c.fix)}` : ''
        }${c.warnings.map((w) => `<br>Warning: ${esc(w)}`).join('')}</td></tr>`,
    )
    .join('\n')
  return page(
    `Check of ${r.domain}`,
    `<p>${esc(r.summary)}</p>
<table><caption>Checks</caption><thead><tr><th scope="col">Check</th><th scope="col">Outcome</th><th scope="col">Reason</th></tr></thead>
<tbody>${checks}</tbody></table>
${seenTable(r.records)}
<p>Checked at ${esc(r.checkedAt)}.</p>
${action(`/enroll/${encodeURIComponent(r.domain)}/check`, 'Check again', csrf)}
${
  r.checks.every((c) => c.outcome === 'pass')
    ? `<h2>Publish the attestation</h2>
<p>Every check passes. Publishing writes the <code>email.atmos.attestation</code> record for ${esc(r.domain)} to your own
repository (record key ${esc(r.domain)}); the labeler then verifies it as these checks did.</p>
${action(`/enroll/${encodeURIComponent(r.domain)}/publish`, 'Publish the attestation', csrf)}`
    : ''
}`,
  )
}

export function issueCredentialsPage(domain: string, csrf: string): string {
  return page(
    `SMTP credentials for ${domain}`,
    `<p>The password and the API key are shown once, when they are issued; issuing again replaces any earlier ones.</p>
${action(`/enroll/${encodeURIComponent(domain)}/credentials`, 'Issue credentials', csrf)}`,
  )
}

export function credentialsPage(domain: string, s: SmtpSettings, apiKey?: string): string {
  return page(
    `SMTP credentials for ${domain}`,
    `<p role="alert">The password${apiKey ? ' and the API key are' : ' is'} shown only now; only ${apiKey ? 'their hashes are' : 'its hash is'} stored. Issuing again replaces ${apiKey ? 'them' : 'it'}.</p>
<dl><dt>Host</dt><dd><code>${esc(s.host)}</code></dd><dt>Port</dt><dd>${esc(s.port)}</dd>
<dt>Security</dt><dd>${s.security === 'starttls' ? 'STARTTLS (required)' : 'TLS'}</dd>
<dt>Username</dt><dd><code>${esc(s.username)}</code></dd><dt>Password</dt><dd><code>${esc(s.password)}</code></dd></dl>
<h2>For a PDS (pds.env)</h2><pre>${esc(s.pdsEnv.join('\n'))}</pre>
<h2>For any other application</h2><pre>${esc(s.generic.join('\n'))}</pre>${apiKey ? apiKeyBlock(apiKey) : ''}`,
  )
}

/** The API key as issued (shown once) and how the HTTP send API takes it. */
export function apiKeyBlock(key: string, heading = 'h2'): string {
  return `
<${heading}>API key</${heading}>
<p>For the HTTP send API, which takes it as a bearer token. It sends as this domain only.</p>
<p><code data-testid="api-key">${esc(key)}</code></p>
<pre data-copy-label="Authorization header with the API key">${esc(`Authorization: Bearer ${key}`)}</pre>`
}

export function errorPage(message: string): string {
  return page('Enrolment', `<p role="alert">${esc(message)}</p><p><a href="/enroll">Back</a></p>`)
}

const STEP_TEXT = {
  records: 'Publish the DNS records and check them',
  labeler: 'Published: waiting for the labeler',
  activate: 'Verified: activate the domain',
  credentials: 'Active: issue the credentials',
  done: 'Enrolled',
  suspended: 'Suspended by an operator',
} as const

const STEP_LINK = {
  records: 'Continue',
  labeler: 'Watch the labels',
  activate: 'Continue',
  credentials: 'Continue',
  done: 'Your account',
  suspended: 'Your account',
} as const

/** The account's domains on /enroll, each with the step it is at and where to continue. */
export function enrolmentList(list: EnrolmentProgress[]): string {
  if (!list.length) return ''
  const rows = list
    .map(
      (e) => `<tr><th scope="row">${esc(e.domain)}</th><td>${esc(STEP_TEXT[e.step])}</td>
<td><a href="${esc(e.path)}" aria-label="${esc(`${STEP_LINK[e.step]}: ${e.domain}`)}">${esc(STEP_LINK[e.step])}</a></td></tr>`,
    )
    .join('\n')
  return `<h2>Your domains</h2>
<table><caption>Domains you hold and the step each is at</caption>
<thead><tr><th scope="col">Domain</th><th scope="col">Step</th><th scope="col">Next</th></tr></thead>
<tbody>${rows}</tbody></table>`
}

/** The labels as the page first shows them; static/admin.js rewrites the same list as it polls. */
function labelItems(w: WatchState): string {
  if (!w.labels.length) return '<li>No labels yet.</li>'
  return w.labels
    .map((l) => `<li><strong>${esc(l.val)}</strong> since ${esc(l.cts)}${l.exp ? `, until ${esc(l.exp)}` : ''}</li>`)
    .join('')
}

const STAGE_TEXT: Record<WatchStage, string> = {
  verifying: 'Waiting for the labeler to verify the attestation.',
  activate: 'The labeler verified the attestation: activate the domain.',
  member: 'The domain is active: waiting for relay-member.',
  done: 'Both labels are on your account.',
}

/** The status line, server-rendered and rewritten by admin.js with the same words. */
export function watchStatus(w: Pick<WatchState, 'stage' | 'reason'>): string {
  return `${STAGE_TEXT[w.stage]}${w.reason ? ` The labels could not be read: ${w.reason}.` : ''}`
}

/**
 * Step 5 after publishing: the account's labels and what comes next. static/admin.js polls
 * `data-watch` every 2 s and shows and hides the sections below by the answer's stage; without
 * it, "Look again" reloads the page, which says the same.
 */
export function watchPage(w: WatchState, csrf: string, opts: { uri: string | null; timeoutMs: number }): string {
  const base = `/enroll/${encodeURIComponent(w.domain)}`
  const hidden = (show: boolean) => (show ? '' : ' hidden')
  const diagnosis = w.diagnosis.map((d) => `<li>${esc(d)}</li>`).join('')
  return page(
    `Labels for ${w.domain}`,
    `${opts.uri ? `<p>The attestation is in your repository: <code>${esc(opts.uri)}</code>.</p>` : ''}
<h2>What comes when</h2>
<ol>
<li><strong>verified-mail-operator</strong> comes first: when the labeler has read the attestation from the network
and its checks pass, usually seconds to a minute after publishing.</li>
<li><strong>relay-member</strong> comes only after you activate the domain, once the labeler learns the relay counts it
active.</li>
</ol>
<section id="labels-watch" data-watch="${esc(`${base}/labels`)}" data-timeout="${esc(opts.timeoutMs)}" data-stage="${esc(w.stage)}">
<h2>Labels on your account</h2>
<p id="labels-status" role="status" aria-live="polite">${esc(watchStatus(w))}</p>
<ul id="labels-list">${labelItems(w)}</ul>
<form method="get" action="${esc(`${base}/watch`)}"><button type="submit">Look again</button></form>
</section>
<section id="labels-activate"${hidden(w.stage === 'activate')}>
<h2>Activate the domain</h2>
<p>The relay starts sending for ${esc(w.domain)} (at a warming pace) once it is active.</p>
${action(`${base}/activate`, 'Activate the domain', csrf)}
</section>
<section id="labels-credentials"${hidden(w.stage === 'member' || w.stage === 'done')}>
<h2>Credentials</h2>
<p>The domain is active: the relay takes mail for it with its own credentials.</p>
${action(`${base}/credentials`, 'Issue credentials', csrf)}
</section>
<section id="labels-help"${hidden(w.overdue && w.diagnosis.length > 0)}>
<h2>Still waiting?</h2>
<ul id="labels-diagnosis">${diagnosis}</ul>
<p>If the records changed, check them again here; the labeler verifies again by itself.</p>
${action(`${base}/check`, 'Check the records again', csrf)}
</section>`,
  )
}
