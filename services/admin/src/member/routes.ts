import type { Db } from '@atmos/db'
import { activeSuppression, listSuppressions, removeSuppression } from '@atmos/reputation'
import { Hono } from 'hono'
import { type MemberIdentity, memberAuth } from './auth.ts'

/**
 * A member's own view under /api/member: its suppression list, and lifting an entry it
 * knows to be good again (a mailbox that bounced and was fixed, an operator's manual
 * entry). A complaint entry is not the member's to lift: the person asked not to get its
 * mail, and sending again would cost the whole pool; an operator can, with the reason.
 */
export function memberRoutes(db: Db): Hono<{ Variables: { member: MemberIdentity } }> {
  const app = new Hono<{ Variables: { member: MemberIdentity } }>()
  app.use('*', memberAuth(db, { maxChecks: 4 }))

  app.get('/suppressions', async (c) => {
    const member = c.get('member')
    const items = await listSuppressions(db, { memberId: member.id, limit: 10_000 })
    return c.json({
      member: member.did,
      items: items.map((s) => ({
        address: s.address,
        reason: s.reason,
        detail: s.detail,
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
    if (!entry) return c.json({ error: 'NotFound', message: `${address} is not on ${member.domain}'s list` }, 404)
    if (entry.reason === 'complaint') {
      return c.json(
        {
          error: 'Forbidden',
          message: `${address} complained about ${member.domain}'s mail; only a pool operator can lift that entry`,
        },
        403,
      )
    }
    await removeSuppression(db, { memberId: member.id, address, by: `member:${member.did}` })
    return c.body(null, 204)
  })

  return app
}
