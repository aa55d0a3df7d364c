import { html, raw } from 'hono/html'
import type { HtmlEscapedString } from 'hono/utils/html'

// The page shell every server-rendered page shares (the sign-in, the account, the
// enrollment wizard, the operator console). `html` escapes every interpolated value;
// only another `html` fragment goes in unescaped. No inline script or style: the CSP
// allows /static alone.

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>

/** Who is signed in, as a page needs it: the DID, its handle when known, and the form token. */
export type PageSession = { did: string; handle: string | null; csrf: string; operator: boolean }

/** The hidden form field carrying the CSRF token; every POST form includes it. */
export function csrfField(token: string): Html {
  return html`<input type="hidden" name="_csrf" value="${token}" />`
}

/** `wide`: a page of tables (the message log) gets the window's width instead of a reading column. */
export function layout(opts: { title: string; body: Html; session?: PageSession | null; wide?: boolean }): Html {
  const s = opts.session
  const nav = s
    ? html`<nav aria-label="Account">
        <a href="/account">Account</a>
        ${s.operator ? html`<a href="/operator">Operator</a>` : ''}
        <form method="post" action="/signout" class="inline">
          ${csrfField(s.csrf)}<button type="submit">Sign out</button>
        </form>
      </nav>`
    : ''
  return html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${opts.title} · Atmosphere Mail</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="/static/admin.css" />
    <script src="/static/admin.js" defer></script>
  </head>
  <body>
    <header>
      <a class="brand" href="/">Atmosphere Mail</a>
      ${nav}
    </header>
    <main id="main" class="${opts.wide ? 'wide' : ''}">${opts.body}</main>
  </body>
</html>`
}

/** The statuses an error page is sent with. */
export type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 410 | 429 | 500 | 502 | 503

/**
 * A page with the status a user (or a client) can act on, never a stack trace: a heading,
 * what happened and what to do, and the way back. Extra headers (Retry-After) go in
 * `headers`: @hono/node-server writes a Response built from a string as it was built, so
 * headers set on it afterwards would be lost.
 */
export async function errorPage(
  status: ErrorStatus,
  title: string,
  detail: string,
  session?: PageSession | null,
  headers: Record<string, string> = {},
): Promise<Response> {
  const body = html`<h1>${title}</h1>
    <p class="error" role="alert">${detail}</p>
    <p><a href="${session ? '/account' : '/'}">${session ? 'Back to your account' : 'Back to sign-in'}</a></p>`
  return new Response(String(await layout({ title, body, session })), {
    status,
    headers: { ...headers, 'Content-Type': 'text/html; charset=UTF-8' },
  })
}

export { html, raw }
