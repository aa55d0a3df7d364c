import { type Db, domains, members, messages } from '@atmos/db'
import { readUnsubscribeToken, type TokenKey } from '@atmos/mail-feedback'
import { suppress } from '@atmos/reputation'
import type { Logger } from '@atmos/runtime'
import { and, eq } from 'drizzle-orm'
import { Hono } from 'hono'
import { errorPage, html, layout } from './layout.ts'

// The public one-click unsubscribe page, `/u/<token>`, that the relay writes into the
// List-Unsubscribe of non-transactional mail (RFC 8058).
//
// GET changes nothing: mail scanners and link previews fetch every URL in a message, so a
// GET that unsubscribed would unsubscribe recipients who never asked. It shows a page whose
// form POSTs. POST, from that form or straight from the recipient's mail provider (with the
// RFC 8058 body `List-Unsubscribe=One-Click`, no cookies, no Origin of ours), suppresses the
// recipient for the member who sent the mail. The token is the only authority: it is an
// HMAC the pool made for this one recipient of this one member, so the worst its holder can
// do is stop that member's mail to that recipient; hence no CSRF token and no session.

const ONE_CLICK = 'One-Click'

export type UnsubscribeOptions = {
  db: Db
  logger: Logger
  /** The pool's token secret; undefined when the admin could not read it (the page says it is unavailable). */
  key: TokenKey | undefined
}

export function unsubscribeRoutes(opts: UnsubscribeOptions): Hono {
  const app = new Hono()
  const { db, logger, key } = opts

  /** The verified token and the domain the mail came from, or an error page. */
  async function resolve(token: string) {
    if (!key) {
      return {
        page: await errorPage(
          503,
          'Unsubscribe unavailable',
          'Unsubscribing is not available right now; try again later.',
        ),
      }
    }
    const subject = readUnsubscribeToken(key, token)
    if (!subject) {
      return {
        page: await errorPage(
          400,
          'This unsubscribe link is not valid',
          'The link is incomplete or was altered. Use the unsubscribe link of a message you received, as it is.',
        ),
      }
    }
    // A token the pool signed for a member who is gone (a test database reset, a restored
    // backup) has no one to suppress for: say so rather than fail on the foreign key.
    const [sender] = await db.select({ id: members.id }).from(members).where(eq(members.id, subject.memberId)).limit(1)
    if (!sender) {
      return {
        page: await errorPage(
          410,
          'Nothing to unsubscribe from',
          'The sender of this message no longer sends through Atmosphere Mail, so no more of its mail will come.',
        ),
      }
    }
    const [sent] = await db
      .select({ domain: domains.domain, domainId: messages.domainId })
      .from(messages)
      .leftJoin(domains, eq(domains.id, messages.domainId))
      .where(and(eq(messages.id, subject.messageId), eq(messages.memberId, subject.memberId)))
      .limit(1)
    return { subject, domain: sent?.domain ?? null, domainId: sent?.domainId ?? null }
  }

  app.get('/:token', async (c) => {
    const r = await resolve(c.req.param('token'))
    if ('page' in r) return r.page
    const from = r.domain ? html` from <strong>${r.domain}</strong>` : ''
    const body = html`<h1>Unsubscribe</h1>
      <p>Stop mail${from} to <strong>${r.subject.recipient}</strong>?</p>
      <form method="post" action="${c.req.path}">
        <input type="hidden" name="List-Unsubscribe" value="${ONE_CLICK}" />
        <button type="submit">Unsubscribe</button>
      </form>`
    // no-store: the page names the recipient. (The token stays out of Referers: securityHeaders sets no-referrer.)
    return c.html(await layout({ title: 'Unsubscribe', body }), 200, { 'Cache-Control': 'no-store' })
  })

  app.post('/:token', async (c) => {
    const r = await resolve(c.req.param('token'))
    if ('page' in r) return r.page
    const form = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>)
    if (form['List-Unsubscribe'] !== ONE_CLICK) {
      return errorPage(
        400,
        'Unsubscribe request not understood',
        'An unsubscribe request must carry List-Unsubscribe=One-Click (RFC 8058); use the button on the unsubscribe page.',
      )
    }
    // suppress() keeps one standing entry per member and address, so a repeat changes nothing.
    await suppress(db, {
      memberId: r.subject.memberId,
      address: r.subject.recipient,
      reason: 'unsubscribe',
      detail: `one-click unsubscribe (message ${r.subject.messageId})`,
      domainId: r.domainId,
    })
    logger.info({ member: r.subject.memberId, message: r.subject.messageId }, 'recipient unsubscribed')
    const from = r.domain ? html` from <strong>${r.domain}</strong>` : ''
    const body = html`<h1>Unsubscribed</h1>
      <p><strong>${r.subject.recipient}</strong> will get no more of this sender's mail${from} through Atmosphere Mail.</p>`
    return c.html(await layout({ title: 'Unsubscribed', body }), 200, { 'Cache-Control': 'no-store' })
  })
  return app
}
