import type { CheckNowResult, SeenRecord } from './check.ts'
import type { Control } from './control.ts'
import type { SmtpSettings } from './credentials.ts'
import type { DnsRecordToPublish } from './records.ts'
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
<dt>Value</dt><dd><code>${esc(rec.value)}</code></dd></dl>
<p>Zone-file line:</p><pre>${esc(rec.zoneLine)}</pre>
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
<pre>${esc(`Authorization: Bearer ${key}`)}</pre>`
}

export function errorPage(message: string): string {
  return page('Enrolment', `<p role="alert">${esc(message)}</p><p><a href="/enroll">Back</a></p>`)
}

export function publishedPage(domain: string, uri: string, csrf: string): string {
  return page(
    `Attestation for ${domain} published`,
    `<p>The record is in your repository: <code>${esc(uri)}</code>. The labeler reads it from the network and verifies
it; this takes from a few seconds to a minute. Then activate the domain to send through the relay.</p>
${action(`/enroll/${encodeURIComponent(domain)}/activate`, 'Activate the domain', csrf)}
<p>If activation says the attestation does not verify yet, wait a little and try again.</p>`,
  )
}
