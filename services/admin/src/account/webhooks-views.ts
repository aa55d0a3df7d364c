import { WEBHOOK_EVENT_TYPES } from '@atmos/db'
import type { DeliveryView, Endpoint } from '@atmos/webhook-events'
import { esc, utc } from './html.ts'

/**
 * The bodies of /account/webhooks and its endpoint pages. Everything interpolated goes
 * through esc(): URLs and descriptions are the member's, errors are a remote server's words.
 */

const token = (csrf: string) => `<input type="hidden" name="_csrf" value="${esc(csrf)}">`
export const webhookPath = (id: number, rest = '') => `/account/webhooks/${id}${rest}`

const EVENT_WORDS: Record<string, string> = {
  'message.delivered': 'a message was delivered to a recipient',
  'message.deferred': 'a delivery attempt failed for now and will be retried',
  'message.bounced': 'a message bounced (our attempt or a later DSN)',
  'message.complained': 'a recipient marked a message as spam',
  'recipient.unsubscribed': 'a recipient unsubscribed from your mail',
  'member.suspended': 'your account or one of your domains was suspended',
  'member.reinstated': 'your account or one of your domains was reinstated',
  'label.changed': 'a label about your account was issued or negated',
}

export type EndpointForm = { url: string; events: string[]; description: string }

function endpointFields(form: EndpointForm, error?: string): string {
  const boxes = WEBHOOK_EVENT_TYPES.map(
    (t) =>
      `<li><label><input type="checkbox" name="events" value="${esc(t)}"${form.events.includes(t) ? ' checked' : ''}> ` +
      `<code>${esc(t)}</code>: ${esc(EVENT_WORDS[t] ?? '')}</label></li>`,
  ).join('')
  return [
    '<label for="webhook-url">Endpoint URL</label>',
    `<input id="webhook-url" name="url" type="url" maxlength="2048" required value="${esc(form.url)}"` +
      `${error ? ' aria-invalid="true" aria-describedby="webhook-error"' : ''}>`,
    '<p class="help">https only, no user name or password in it; it must resolve to public addresses.</p>',
    '<label for="webhook-description">Description (optional)</label>',
    `<input id="webhook-description" name="description" type="text" maxlength="200" value="${esc(form.description)}">`,
    `<fieldset><legend>Events to send</legend><ul class="choices">${boxes}</ul></fieldset>`,
    error ? `<p id="webhook-error" class="error" role="alert">${esc(error)}</p>` : '',
  ].join('')
}

function stateOf(e: Endpoint): string {
  if (e.disabledAt) return `disabled since ${utc(e.disabledAt)}: ${e.disabledReason ?? 'no reason recorded'}`
  if (e.failingSince) return `enabled, failing since ${utc(e.failingSince)}`
  return 'enabled'
}

/** /account/webhooks: the endpoints, and the form to add one. */
export function webhooksPage(
  endpoints: Endpoint[],
  opts: { csrf: string; form?: EndpointForm; error?: string | undefined; notice?: string | undefined; max: number },
): string {
  const parts = [
    '<h1>Webhooks</h1>',
    '<p><a href="/account">Back to your account</a></p>',
    '<p>The pool POSTs the events you choose to your HTTPS endpoints, signed as the ',
    '<a href="https://www.standardwebhooks.com">Standard Webhooks</a> specification says (headers ',
    '<code>webhook-id</code>, <code>webhook-timestamp</code>, <code>webhook-signature</code>). A delivery that ',
    'fails is retried for about a day; an endpoint whose deliveries keep failing is disabled, and shown here.</p>',
    opts.notice ? `<p class="notice" role="status">${esc(opts.notice)}</p>` : '',
  ]
  const disabled = endpoints.filter((e) => e.disabledAt)
  if (disabled.length) {
    parts.push(
      `<p class="error" role="alert">${disabled.length === 1 ? 'An endpoint was' : `${disabled.length} endpoints were`} ` +
        'disabled after failing deliveries. Fix it, then enable it again on its page.</p>',
    )
  }
  if (endpoints.length) {
    const rows = endpoints
      .map(
        (e) =>
          `<tr><th scope="row"><a href="${esc(webhookPath(e.id))}">${esc(e.url)}</a>` +
          `${e.description ? `<br><span class="detail">${esc(e.description)}</span>` : ''}</th>` +
          `<td>${e.events.map((t) => `<code>${esc(t)}</code>`).join(' ')}</td>` +
          `<td data-testid="webhook-state">${esc(stateOf(e))}</td></tr>`,
      )
      .join('')
    parts.push(
      '<table class="webhooks-table"><thead><tr><th scope="col">Endpoint</th><th scope="col">Events</th>',
      `<th scope="col">State</th></tr></thead><tbody>${rows}</tbody></table>`,
    )
  } else {
    parts.push('<p class="empty">You have no webhook endpoint.</p>')
  }
  if (endpoints.length < opts.max) {
    parts.push(
      '<h2>Add an endpoint</h2>',
      `<form method="post" action="/account/webhooks">${token(opts.csrf)}`,
      endpointFields(opts.form ?? { url: '', events: [], description: '' }, opts.error),
      '<button type="submit">Add the endpoint</button></form>',
    )
  } else {
    parts.push(`<p class="note">You hold ${opts.max} endpoints, the most an account may hold.</p>`)
  }
  return parts.join('')
}

/** The secret, once: after creation and after a rotation. */
export function secretPage(e: { id: number; url: string }, secret: string, rotated: boolean): string {
  return [
    `<h1>${rotated ? 'New signing secret' : 'Endpoint added'}</h1>`,
    `<p>The signing secret of <code>${esc(e.url)}</code>. It is shown this once: copy it into your receiver now.</p>`,
    `<p><code class="secret" data-testid="webhook-secret">${esc(secret)}</code></p>`,
    rotated
      ? '<p>The previous secret keeps signing beside this one for a while (each request carries both signatures), so you can update your receiver without missing an event.</p>'
      : '',
    `<p><a href="${esc(webhookPath(e.id))}">Go to the endpoint</a></p>`,
  ].join('')
}

function deliveriesTable(items: DeliveryView[]): string {
  if (!items.length) return '<p class="empty">Nothing sent to this endpoint yet.</p>'
  const rows = items
    .map((d) => {
      const state =
        d.state === 'delivered'
          ? `delivered ${utc(d.deliveredAt)}`
          : d.state === 'failed'
            ? 'failed, no more attempts'
            : `pending, next attempt ${utc(d.nextAttemptAt)}`
      return (
        `<tr><td><code>${esc(d.eventId)}</code></td><td><code>${esc(d.type)}</code></td><td>${esc(utc(d.createdAt))}</td>` +
        `<td>${esc(state)}</td><td>${esc(d.attempts)}</td>` +
        `<td>${d.lastStatus === null ? '' : esc(d.lastStatus)}${d.lastError ? ` ${esc(d.lastError)}` : ''}</td></tr>`
      )
    })
    .join('')
  return (
    '<table class="webhook-deliveries"><caption>Latest deliveries, newest first</caption>' +
    '<thead><tr><th scope="col">Event id</th><th scope="col">Type</th><th scope="col">Created</th>' +
    '<th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Last answer</th></tr></thead>' +
    `<tbody>${rows}</tbody></table>`
  )
}

/** /account/webhooks/:id: state, edit, test, rotate, enable, delete, and the latest deliveries. */
export function endpointPage(
  e: Endpoint,
  deliveries: DeliveryView[],
  opts: { csrf: string; form?: EndpointForm; error?: string | undefined; notice?: string | undefined },
): string {
  const act = (path: string, label: string, confirm?: string) =>
    `<form method="post" action="${esc(webhookPath(e.id, path))}" class="inline">${token(opts.csrf)}` +
    `<button type="submit"${confirm ? ` data-confirm="${esc(confirm)}"` : ''}>${esc(label)}</button></form>`
  return [
    `<h1>Webhook endpoint</h1>`,
    '<p><a href="/account/webhooks">Back to your webhooks</a></p>',
    opts.notice ? `<p class="notice" role="status">${esc(opts.notice)}</p>` : '',
    '<dl class="facts">',
    `<dt>URL</dt><dd><code>${esc(e.url)}</code></dd>`,
    `<dt>State</dt><dd data-testid="webhook-state">${esc(stateOf(e))}</dd>`,
    `<dt>Failed events in a row</dt><dd>${esc(e.consecutiveFailures)}</dd>`,
    `<dt>Last success</dt><dd>${esc(e.lastSuccessAt ? utc(e.lastSuccessAt) : 'never')}</dd>`,
    e.previousSecretExpiresAt && e.previousSecretExpiresAt > new Date()
      ? `<dt>Previous secret</dt><dd>still signs until ${esc(utc(e.previousSecretExpiresAt))}</dd>`
      : '',
    '</dl>',
    '<p>',
    act('/test', 'Send a test event'),
    e.disabledAt ? act('/enable', 'Enable again') : '',
    act(
      '/rotate',
      'Rotate the secret',
      'A new secret is shown once; the current one keeps signing for a while. Rotate?',
    ),
    '</p>',
    '<h2>Latest deliveries</h2>',
    deliveriesTable(deliveries),
    '<h2>Change</h2>',
    `<form method="post" action="${esc(webhookPath(e.id))}">${token(opts.csrf)}`,
    endpointFields(opts.form ?? { url: e.url, events: e.events, description: e.description }, opts.error),
    '<button type="submit">Save</button></form>',
    '<h2>Delete</h2>',
    act('/delete', 'Delete this endpoint', 'Delete this endpoint and its delivery history?'),
  ].join('')
}
