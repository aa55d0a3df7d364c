import { auditLog, type Db } from '@atmos/db'
import { type Context, Hono } from 'hono'
import type { z } from 'zod'
import type { SessionVars } from '../web/session.ts'
import { clientInfo } from '../web/signin.ts'
import { AggregateInputError, aggregateBody, listAggregates, recordAggregate, UnknownMemberError } from './aggregate.ts'
import { operatorAuth } from './auth.ts'
import { categoryMismatchQuery, listCategoryMismatches } from './category-mismatch.ts'
import { complaintsQuery, listComplaints } from './complaints.ts'
import { inboundQuery, inboundRaw, listInbound } from './inbound.ts'
import { memberView } from './member.ts'
import { listThrottleDecisions, throttleDecisionsQuery } from './throttle-decisions.ts'

/** A request that failed validation: 400 with every problem named by its field. */
function invalid(c: Context, error: z.ZodError) {
  const message = error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')
  return c.json({ error: 'InvalidRequest', message }, 400)
}

const DID = /^did:(plc|web):[a-zA-Z0-9._:%-]{1,2048}$/

/**
 * The operator's API under /api/operator: a member with its domains (live, given up and
 * moved), inbound mail (operator mail and its forwards, quarantined reports), complaints
 * (counted or not, and why) and providers' aggregate complaint figures per member.
 */
export function operatorRoutes(db: Db, token: string | undefined): Hono<{ Variables: SessionVars }> {
  const app = new Hono<{ Variables: SessionVars }>()
  app.use('*', operatorAuth(token))

  app.get('/inbound', async (c) => {
    const q = inboundQuery.safeParse(c.req.query())
    if (!q.success) return invalid(c, q.error)
    const items = await listInbound(db, q.data)
    const last = items.at(-1)
    return c.json({ items, ...(items.length === q.data.limit && last ? { next: last.id } : {}) })
  })

  app.get('/complaints', async (c) => {
    const q = complaintsQuery.safeParse(c.req.query())
    if (!q.success) return invalid(c, q.error)
    const items = await listComplaints(db, q.data)
    const last = items.at(-1)
    return c.json({ items, ...(items.length === q.data.limit && last ? { next: last.id } : {}) })
  })

  app.get('/category-mismatches', async (c) => {
    const q = categoryMismatchQuery.safeParse(c.req.query())
    if (!q.success) return invalid(c, q.error)
    return c.json({ items: await listCategoryMismatches(db, q.data) })
  })

  app.get('/throttle-decisions', async (c) => {
    const q = throttleDecisionsQuery.safeParse(c.req.query())
    if (!q.success) return invalid(c, q.error)
    const items = await listThrottleDecisions(db, q.data)
    const last = items.at(-1)
    return c.json({ items, ...(items.length === q.data.limit && last ? { next: last.id } : {}) })
  })

  app.get('/inbound/:id/raw', async (c) => {
    const id = Number(c.req.param('id'))
    if (!Number.isSafeInteger(id) || id <= 0) {
      return c.json({ error: 'InvalidRequest', message: 'id: a positive number' }, 400)
    }
    const raw = await inboundRaw(db, id)
    if (!raw) return c.json({ error: 'NotFound', message: `no inbound message ${id}` }, 404)
    return c.body(new Uint8Array(raw), 200, {
      'Content-Type': 'message/rfc822',
      'Content-Disposition': `attachment; filename="inbound-${id}.eml"`,
      // Mail from strangers: never rendered by a browser as anything but a download.
      'X-Content-Type-Options': 'nosniff',
      'Content-Security-Policy': "default-src 'none'",
    })
  })

  app.get('/members/:did', async (c) => {
    const did = c.req.param('did')
    if (!DID.test(did)) return c.json({ error: 'InvalidRequest', message: 'did: a did:plc or did:web' }, 400)
    const member = await memberView(db, did)
    if (!member) return c.json({ error: 'NotFound', message: `no member ${did}` }, 404)
    return c.json(member)
  })

  app.get('/members/:did/aggregate-feedback', async (c) => {
    const did = c.req.param('did')
    if (!DID.test(did)) return c.json({ error: 'InvalidRequest', message: 'did: a did:plc or did:web' }, 400)
    try {
      return c.json(await listAggregates(db, did))
    } catch (err) {
      if (err instanceof UnknownMemberError) return c.json({ error: 'NotFound', message: err.message }, 404)
      throw err
    }
  })

  app.post('/members/:did/aggregate-feedback', async (c) => {
    const did = c.req.param('did')
    if (!DID.test(did)) return c.json({ error: 'InvalidRequest', message: 'did: a did:plc or did:web' }, 400)
    const json = await c.req.json().catch(() => undefined)
    if (json === undefined) return c.json({ error: 'InvalidRequest', message: 'body: a JSON object' }, 400)
    const body = aggregateBody.safeParse(json)
    if (!body.success) return invalid(c, body.error)
    // Who entered the figures: the signed-in operator's DID, or the token (scripts, the CLI).
    const session = c.get('session')
    const actor = !c.req.header('authorization') && session ? `admin:${session.did}` : 'operator:admin'
    try {
      const recorded = await recordAggregate(db, did, body.data, actor)
      await db.insert(auditLog).values({
        actor,
        action: 'aggregate-feedback.recorded',
        did,
        detail: { ...body.data, id: recorded.id, ip: clientInfo(c).ip },
      })
      return c.json(recorded, 201)
    } catch (err) {
      if (err instanceof UnknownMemberError) return c.json({ error: 'NotFound', message: err.message }, 404)
      if (err instanceof AggregateInputError) return c.json({ error: 'InvalidRequest', message: err.message }, 400)
      throw err
    }
  })

  return app
}
