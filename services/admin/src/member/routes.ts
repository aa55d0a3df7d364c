import type { Db } from '@atmos/db'
import { sql } from 'drizzle-orm'
import { Hono } from 'hono'
import { memberDomains } from '../domains.ts'
import type { SessionVars } from '../web/session.ts'
import { clientInfo } from '../web/signin.ts'
import { type MemberIdentity, memberAuth } from './auth.ts'
import { liftSuppression, memberSuppressions } from './suppressions.ts'

/**
 * A member's own view under /api/member: who it is (its domains, each with its status and
 * warming), its suppression list, and lifting an entry it knows to be good again (a mailbox
 * that bounced and was fixed, an operator's manual entry). The rules of the list and of
 * lifting are ./suppressions.ts's, shared with the account page.
 */
export function memberRoutes(db: Db): Hono<{ Variables: { member: MemberIdentity } & SessionVars }> {
  const app = new Hono<{ Variables: { member: MemberIdentity } & SessionVars }>()
  app.use('*', memberAuth(db, { maxChecks: 4 }))

  app.get('/', async (c) => {
    const member = c.get('member')
    const rows = await db.execute<{ status: string; status_reason: string | null }>(
      sql`select status, status_reason from members where id = ${member.id}`,
    )
    return c.json({
      member: member.did,
      status: rows[0]?.status ?? null,
      statusReason: rows[0]?.status_reason ?? null,
      // The credential signed in with: scoped to one domain, or (null) to any of the member's;
      // null when signed in with atproto.
      credential: member.username ? { username: member.username, domain: member.domain } : null,
      domains: await memberDomains(db, member.id),
    })
  })

  app.get('/suppressions', async (c) => {
    const member = c.get('member')
    const items = await memberSuppressions(db, member.id)
    return c.json({
      member: member.did,
      domains: (await memberDomains(db, member.id)).map((d) => d.domain),
      items: items.map((s) => ({
        address: s.address,
        reason: s.reason,
        detail: s.detail,
        // The domain whose mail led to the entry, when known; the entry stands for all of them.
        domain: s.domain,
        since: s.since.toISOString(),
        expiresAt: s.expiresAt ? s.expiresAt.toISOString() : null,
      })),
    })
  })

  app.delete('/suppressions/:address', async (c) => {
    const member = c.get('member')
    let address: string
    try {
      address = decodeURIComponent(c.req.param('address'))
    } catch {
      return c.json({ error: 'InvalidRequest', message: 'address: an email address' }, 400)
    }
    const result = await liftSuppression(db, {
      member,
      address,
      actor: `admin:${member.did}`,
      detail: { ip: clientInfo(c).ip, via: member.username ? `credential ${member.username}` : 'session' },
    })
    if (!result.ok) return c.json({ error: result.error, message: result.message }, result.status)
    return c.body(null, 204)
  })

  return app
}
