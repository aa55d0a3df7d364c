import type { Db } from '@atmos/db'
import { activeSuppression, listSuppressions, removeSuppression } from '@atmos/reputation'
import { sql } from 'drizzle-orm'
import { Hono } from 'hono'
import { memberDomains } from '../domains.ts'
import type { SessionVars } from '../web/session.ts'
import { type MemberIdentity, memberAuth } from './auth.ts'

/**
 * A member's own view under /api/member: who it is (its domains, each with its status and
 * warming), its suppression list, and lifting an entry it knows to be good again (a mailbox
 * that bounced and was fixed, an operator's manual entry). The list is the member's, over
 * all its domains: a recipient who bounced or complained is not sent the member's mail from
 * another of its domains either. A complaint entry is not the member's to lift: the person
 * asked not to get its mail, and sending again would cost the whole pool; an operator can.
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
    const items = await listSuppressions(db, { memberId: member.id, limit: 10_000 })
    return c.json({
      member: member.did,
      domains: (await memberDomains(db, member.id)).map((d) => d.domain),
      items: items.map((s) => ({
        address: s.address,
        reason: s.reason,
        detail: s.detail,
        // The domain whose mail led to the entry, when known; the entry stands for all of them.
        domain: s.domain,
        since: s.createdAt.toISOString(),
        expiresAt: s.expiresAt ? s.expiresAt.toISOString() : null,
      })),
    })
  })

  app.delete('/suppressions/:address', async (c) => {
    const member = c.get('member')
    const address = decodeURIComponent(c.req.param('address')).trim().toLowerCase()
    if (!/^[^\s@]{1,64}@[^\s@]{1,255}$/.test(address)) {
      return c.json({ error: 'InvalidRequest', message: 'address: an email address' }, 400)
    }
    const entry = await activeSuppression(db, member.id, address)
    if (!entry) {
      return c.json({ error: 'NotFound', message: `${address} is not on the suppression list of ${member.did}` }, 404)
    }
    if (entry.reason === 'complaint') {
      const whose = entry.domain ? `${entry.domain}'s` : `${member.did}'s`
      return c.json(
        {
          error: 'Forbidden',
          message: `${address} complained about ${whose} mail; only a pool operator can lift that entry`,
        },
        403,
      )
    }
    await removeSuppression(db, { memberId: member.id, address, by: `member:${member.did}` })
    return c.body(null, 204)
  })

  return app
}
