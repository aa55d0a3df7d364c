import type { Server } from 'node:http'
import { serve } from '@hono/node-server'
import { type Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { html, raw } from 'hono/html'
import type { HtmlEscapedString } from 'hono/utils/html'
import type { LocalNetwork } from './network.ts'
import { NotFound } from './network.ts'
import { REPLIES, type SinkEntry } from './sink.ts'
import { formatRecord, parseZoneLine, parseZoneText, ZoneLineError } from './zone.ts'

// The network's pages (DNS records, the sink's messages and its buttons) and the small JSON
// API the CLI uses, on loopback only. Forms post to the same origin (checked); the API takes
// JSON only, which a page of another origin cannot send without a preflight we never answer.

/** Bytes a request body may hold: a pasted zone of the wizard's records is a few kilobytes. */
export const MAX_BODY = 64 * 1024

export type WebServer = { url: string; close: () => Promise<void> }

type Html = HtmlEscapedString | Promise<HtmlEscapedString>

export async function startWeb(net: LocalNetwork, port: number): Promise<WebServer> {
  const app = webApp(net)
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port }, () => resolve(s as Server)) as Server
    s.once('error', reject)
  })
  const bound = (server.address() as { port: number }).port
  return {
    url: `http://127.0.0.1:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export function webApp(net: LocalNetwork): Hono {
  const app = new Hono()

  app.use('*', async (c, next) => {
    // Names that reach this loopback listener through someone's DNS (rebinding) are refused.
    const host = (c.req.header('host') ?? '').replace(/:\d+$/, '')
    if (host !== '127.0.0.1' && host !== 'localhost') return c.text('unknown host\n', 421)
    if (c.req.method === 'POST' || c.req.method === 'DELETE') {
      const origin = c.req.header('origin')
      const self = new URL(c.req.url).origin
      const isApi = c.req.path.startsWith('/api/')
      if (origin !== undefined && origin !== self && origin !== self.replace('127.0.0.1', 'localhost'))
        return c.text('cross-origin request refused\n', 403)
      // A form post always carries its origin; the API is for the CLI, in JSON only.
      if (!isApi && origin === undefined) return c.text('a form post without Origin is refused\n', 403)
      if (isApi && !(c.req.header('content-type') ?? '').startsWith('application/json'))
        return c.json({ error: 'the API takes application/json' }, 415)
    }
    await next()
    c.header('x-content-type-options', 'nosniff')
    c.header('x-frame-options', 'DENY')
    c.header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
    c.header('referrer-policy', 'no-referrer')
  })
  app.use(
    '*',
    bodyLimit({ maxSize: MAX_BODY, onError: (c) => c.text(`request body over ${MAX_BODY} bytes refused\n`, 413) }),
  )
  app.onError((err, c) => {
    if (err instanceof ZoneLineError) return fail(c, 400, err.message)
    if (err instanceof NotFound) return fail(c, 404, err.message)
    return fail(c, 500, `internal error: ${err.message}`)
  })

  // ---- pages ----
  app.get('/', (c) => c.html(page('Local network', overview(net))))
  app.get('/dns', (c) => c.html(page('DNS records', dnsPage(net, c.req.query('msg')))))
  app.post('/dns/publish', async (c) => {
    const form = await c.req.parseBody()
    const added = net.publish(parseZoneText(String(form.lines ?? '')))
    return c.redirect(`/dns?msg=${encodeURIComponent(`${added} record(s) published`)}`, 303)
  })
  app.post('/dns/remove', async (c) => {
    const form = await c.req.parseBody()
    const removed = net.remove({ name: '', record: parseZoneLine(String(form.line ?? '')) })
    return c.redirect(`/dns?msg=${encodeURIComponent(`${removed} record(s) removed`)}`, 303)
  })
  app.get('/sink', (c) => c.html(page('Sink: received mail', sinkPage(net, c.req.query('msg')))))
  app.post('/sink/next', async (c) => {
    const form = await c.req.parseBody()
    setNext(net, String(form.reply ?? ''))
    return c.redirect(`/sink?msg=${encodeURIComponent(`next recipient: ${net.sink!.nextReply ?? 'accepted'}`)}`, 303)
  })
  app.get('/sink/:id', (c) => {
    const entry = net.sink!.get(c.req.param('id'))
    if (!entry) throw new NotFound('no such message (the sink keeps the newest only)')
    return c.html(page(`Message ${entry.id}`, messagePage(net, entry, c.req.query('msg'))))
  })
  app.post('/sink/:id/complain', async (c) => {
    const reply = await net.complain(c.req.param('id'))
    return c.redirect(`/sink/${c.req.param('id')}?msg=${encodeURIComponent(`complaint sent: ${reply}`)}`, 303)
  })
  app.post('/sink/:id/bounce', async (c) => {
    const reply = await net.bounce(c.req.param('id'))
    return c.redirect(`/sink/${c.req.param('id')}?msg=${encodeURIComponent(`bounce sent: ${reply}`)}`, 303)
  })

  // ---- API (the CLI) ----
  app.get('/api/info', (c) => {
    const { demo, ...info } = net.info()
    // The demo password is in the state directory and the stack's summary, not on the wire.
    return c.json({ ...info, demo: { did: demo.did, handle: demo.handle, email: demo.email, domain: demo.domain } })
  })
  app.get('/api/dns', (c) => c.json({ records: net.records().map(formatRecord), builtIn: net.builtInLines() }))
  app.post('/api/dns', async (c) => {
    const body = await jsonBody(c)
    const lines = body.lines
    if (!Array.isArray(lines) || !lines.every((l) => typeof l === 'string'))
      throw new ZoneLineError('expected {"lines": ["name. IN TXT \\"…\\"", …]}')
    return c.json({ added: net.publish(parseZoneText(lines.join('\n'))) })
  })
  app.delete('/api/dns', async (c) => {
    const body = await jsonBody(c)
    if (typeof body.line === 'string')
      return c.json({ removed: net.remove({ name: '', record: parseZoneLine(body.line) }) })
    if (typeof body.name !== 'string')
      throw new ZoneLineError('expected {"name": "…", "type"?: "TXT"} or {"line": "…"}')
    const type = typeof body.type === 'string' ? body.type : undefined
    return c.json({ removed: net.remove({ name: body.name, ...(type ? { type } : {}) }) })
  })
  app.get('/api/sink', (c) => c.json({ messages: net.sink!.list(), nextReply: net.sink!.nextReply ?? null }))
  app.get('/api/sink/:id', (c) => {
    const entry = net.sink!.get(c.req.param('id'))
    if (!entry) throw new NotFound('no such message')
    return c.json({ ...entry, raw: net.sink!.raw(entry.id)!.toString('utf8') })
  })
  app.post('/api/sink/next', async (c) => {
    const body = await jsonBody(c)
    setNext(net, String(body.reply ?? ''))
    return c.json({ nextReply: net.sink!.nextReply ?? null })
  })
  app.post('/api/sink/:id/complain', async (c) => c.json({ reply: await net.complain(c.req.param('id')) }))
  app.post('/api/sink/:id/bounce', async (c) => c.json({ reply: await net.bounce(c.req.param('id')) }))
  return app
}

function setNext(net: LocalNetwork, reply: string) {
  if (reply === 'hard' || reply === 'soft') net.sink!.nextReply = reply
  else if (reply === 'accept') net.sink!.nextReply = undefined
  else throw new ZoneLineError('reply is one of hard, soft, accept')
}

async function jsonBody(c: Context): Promise<Record<string, unknown>> {
  try {
    const body = await c.req.json()
    if (body && typeof body === 'object' && !Array.isArray(body)) return body as Record<string, unknown>
  } catch {}
  throw new ZoneLineError('the body is not a JSON object')
}

function fail(c: Context, status: 400 | 404 | 500, message: string) {
  if (c.req.path.startsWith('/api/')) return c.json({ error: message }, status)
  return c.html(page('Refused', html`<p role="alert">${message}</p><p><a href="/">Back</a></p>`), status)
}

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#111}
nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ccc;padding:.25rem;text-align:left;vertical-align:top}
code,pre,textarea{font:14px/1.4 ui-monospace,monospace}pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f4;padding:.5rem}
textarea{width:100%}.pass{color:#065f46}.fail{color:#991b1b}.msg{background:#eef;padding:.5rem}form.inline{display:inline}`

function page(title: string, body: Html): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · Atmosphere local network</title><style>${raw(STYLE)}</style></head>
<body><nav aria-label="Local network"><a href="/">Overview</a><a href="/dns">DNS records</a><a href="/sink">Sink</a></nav>
<main><h1>${title}</h1>${body}</main></body></html>`
}

function notice(msg: string | undefined): Html {
  return msg ? html`<p class="msg" role="status">${msg}</p>` : html``
}

function overview(net: LocalNetwork): Html {
  const info = net.info()
  return html`<p>Everything here runs on this machine; nothing reaches the internet.</p>
<dl>
<dt>PDS</dt><dd><code>${info.pdsUrl}</code></dd>
<dt>PLC directory</dt><dd><code>${info.plcUrl}</code></dd>
<dt>DNS (UDP and TCP)</dt><dd><code>${info.dns.host}:${info.dns.port}</code></dd>
<dt>Sink MX (every recipient domain)</dt><dd><code>${info.sink.host}:${info.sink.port}</code> as <code>${info.sink.hostname}</code></dd>
<dt>Demo account</dt><dd><code>${info.demo.handle}</code> (${info.demo.did}); its password is in the stack's summary</dd>
<dt>Demo domain</dt><dd><code>${info.demo.domain}</code>: publish its records on the <a href="/dns">DNS page</a></dd>
</dl>`
}

function dnsPage(net: LocalNetwork, msg: string | undefined): Html {
  const records = net.records()
  return html`${notice(msg)}
<h2>Publish</h2>
<form method="post" action="/dns/publish">
<label for="lines">Zone-file lines, one record a line, as the admin's wizard shows them</label>
<textarea id="lines" name="lines" rows="8" required placeholder='${net.demo?.domain ?? 'example.test'}. IN TXT "v=spf1 include:_spf.example -all"'></textarea>
<button type="submit">Publish</button></form>
<h2>Published records</h2>
${
  records.length === 0
    ? html`<p>None yet.</p>`
    : html`<table><thead><tr><th scope="col">Record</th><th scope="col">Action</th></tr></thead><tbody>
${records.map((r) => {
  const line = formatRecord(r)
  return html`<tr><td><code>${line}</code></td><td><form class="inline" method="post" action="/dns/remove"><input type="hidden" name="line" value="${line}"><button type="submit" aria-label="Remove ${line}">Remove</button></form></td></tr>`
})}</tbody></table>`
}
<h2>The network's own records</h2>
<pre>${net.builtInLines().join('\n')}</pre>
<p>Any other name has <code>MX 10 ${'mx.sink.localnet.test'}.</code>: mail to every other domain reaches the sink.</p>`
}

function sinkPage(net: LocalNetwork, msg: string | undefined): Html {
  const messages = net.sink!.list()
  const next = net.sink!.nextReply
  return html`${notice(msg)}
<p>The next recipient is ${next ? html`<strong>answered ${REPLIES[next].code} ${REPLIES[next].text}</strong>` : 'accepted'}.</p>
<form method="post" action="/sink/next" class="inline"><input type="hidden" name="reply" value="hard"><button type="submit">Hard-bounce the next recipient (550 5.1.1)</button></form>
<form method="post" action="/sink/next" class="inline"><input type="hidden" name="reply" value="soft"><button type="submit">Soft-bounce the next recipient (451 4.2.0)</button></form>
<form method="post" action="/sink/next" class="inline"><input type="hidden" name="reply" value="accept"><button type="submit">Accept the next recipient</button></form>
<h2>Received, newest first</h2>
${
  messages.length === 0
    ? html`<p>Nothing received yet.</p>`
    : html`<table><thead><tr><th scope="col">Received</th><th scope="col">To</th><th scope="col">Subject</th><th scope="col">DKIM</th><th scope="col">SPF</th><th scope="col">DMARC</th></tr></thead><tbody>
${messages.map(
  (
    m,
  ) => html`<tr><td><a href="/sink/${m.id}">${m.receivedAt}</a></td><td>${m.rcptTo.join(', ')}</td><td>${m.subject}</td>
<td>${m.verdicts.dkim.map((d) => html`<div class="${d.result === 'pass' ? 'pass' : 'fail'}">${d.domain}: ${d.result}</div>`)}</td>
<td>${m.verdicts.spf.result}</td><td>${m.verdicts.dmarc.result}</td></tr>`,
)}</tbody></table>`
}`
}

function messagePage(net: LocalNetwork, m: SinkEntry, msg: string | undefined): Html {
  const raw = net.sink!.raw(m.id)?.toString('utf8') ?? ''
  const v = m.verdicts
  return html`${notice(msg)}
<dl>
<dt>Connection</dt><dd>from ${m.remoteAddress}, HELO <code>${m.helo}</code>${m.secure ? ', STARTTLS' : ''}</dd>
<dt>MAIL FROM</dt><dd><code>${m.mailFrom || '<>'}</code></dd>
<dt>RCPT TO</dt><dd><code>${m.rcptTo.join(', ')}</code></dd>
<dt>From</dt><dd>${m.from}</dd><dt>Subject</dt><dd>${m.subject}</dd>
</dl>
<h2>Verdicts, as a receiver computes them</h2>
${v.error ? html`<p role="alert">Not computed: ${v.error}</p>` : html``}
<table><thead><tr><th scope="col">Check</th><th scope="col">Result</th><th scope="col">Detail</th></tr></thead><tbody>
${v.dkim.length === 0 ? html`<tr><td>DKIM</td><td>none</td><td>no signature</td></tr>` : html``}
${v.dkim.map((d) => html`<tr><td>DKIM d=${d.domain} s=${d.selector}</td><td class="${d.result === 'pass' ? 'pass' : 'fail'}">${d.result}</td><td>${d.algorithm} ${d.comment}</td></tr>`)}
<tr><td>SPF</td><td class="${v.spf.result === 'pass' ? 'pass' : 'fail'}">${v.spf.result}</td><td>${v.spf.domain}</td></tr>
<tr><td>DMARC</td><td class="${v.dmarc.result === 'pass' ? 'pass' : 'fail'}">${v.dmarc.result}</td><td>${v.dmarc.domain} ${v.dmarc.policy}</td></tr>
${v.arc ? html`<tr><td>ARC</td><td>${v.arc.result}</td><td>i=${v.arc.instance}</td></tr>` : html``}
</tbody></table>
<h2>Feedback</h2>
<form method="post" action="/sink/${m.id}/complain" class="inline"><button type="submit">Complain (ARF report to the pool)</button></form>
<form method="post" action="/sink/${m.id}/bounce" class="inline"><button type="submit">Bounce (DSN to the return path)</button></form>
${m.feedback.length ? html`<ul>${m.feedback.map((f) => html`<li>${f.at}: ${f.kind} to <code>${f.to}</code>, answered <code>${f.reply}</code></li>`)}</ul>` : html``}
<h2>Message</h2>
<pre>${raw}</pre>`
}
