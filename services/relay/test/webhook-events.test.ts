import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Pool } from '@atmos/db'
import { newKekLine, parseKeyring } from '@atmos/secrets'
import type { TestDnsServer } from '@atmos/testkit'
import { createEndpoint } from '@atmos/webhook-events'
import {
  type DeliveryWorld,
  enqueueDelivery,
  eventually,
  final,
  seedMember,
  spoolMessage,
  startDelivery,
  startDeliveryWorld,
} from './delivery-helpers.ts'

// A real delivery (one relay delivery role, a loopback MX sink) writes the member's webhook
// events in the outbox, in the transaction that records each outcome: deferred, then
// delivered; and a 5xx writes message.bounced. A member without an endpoint gets none.

let world: DeliveryWorld
let sql: Pool
let dns: TestDnsServer
let stopDelivery: () => Promise<void>

before(async () => {
  world = await startDeliveryWorld('webhook-events', { a: '127.0.0.2' }, { 'mx-a.sinks.test': { A: ['127.0.0.2'] } })
  ;({ sql, dns } = world)
  stopDelivery = (await startDelivery(world.env())).stop
})

after(async () => {
  await stopDelivery?.()
  await world?.close()
})

type EventRow = { type: string; member_id: string; payload: Record<string, unknown>; endpoint_id: string }

async function eventsOf(memberId: number): Promise<EventRow[]> {
  return sql<EventRow[]>`
    select e.type, e.member_id::text, e.payload, d.endpoint_id::text from webhook_events e
    join webhook_deliveries d on d.event_id = e.id
    where e.member_id = ${memberId} order by e.id`
}

describe('webhook events from relay delivery', () => {
  it('writes message.deferred then message.delivered for a greylisted recipient, and message.bounced for a 550', async () => {
    const memberId = await seedMember(sql, 'hooked.example')
    const quiet = await seedMember(sql, 'quiet.example')
    const ep = await createEndpoint(sql, parseKeyring(newKekLine()), {
      memberId,
      url: 'https://hooks.example.net/atmos',
      events: ['message.delivered', 'message.deferred', 'message.bounced'],
    })
    dns.set('hooks-rcpt.test', { MX: [{ priority: 10, exchange: 'mx-a.sinks.test' }] })
    let refusals = 0
    world.sinks.a!.onRcpt = (to) => {
      if (to === 'ann@hooks-rcpt.test' && refusals++ === 0) return { code: 451, text: '4.3.0 try later' }
      if (to === 'nobody@hooks-rcpt.test') return { code: 550, text: '5.1.1 User unknown' }
      return undefined
    }
    const ann = await spoolMessage(sql, { memberId, to: 'ann@hooks-rcpt.test', from: 'a@hooked.example' })
    const nobody = await spoolMessage(sql, { memberId, to: 'nobody@hooks-rcpt.test', from: 'a@hooked.example' })
    const other = await spoolMessage(sql, { memberId: quiet, to: 'bob@hooks-rcpt.test', from: 'a@quiet.example' })
    await enqueueDelivery(world.prefix, [ann.messageId, nobody.messageId, other.messageId])
    assert.equal((await final(sql, ann.recipientId, 30_000)).state, 'delivered')
    assert.equal((await final(sql, nobody.recipientId, 30_000)).state, 'bounced')
    assert.equal((await final(sql, other.recipientId, 30_000)).state, 'delivered')

    const events = await eventually(
      async () => {
        const rows = await eventsOf(memberId)
        return rows.length >= 3 ? rows : undefined
      },
      15_000,
      'three events',
    )
    assert.ok(events.every((e) => Number(e.endpoint_id) === ep.id))
    const ofAnn = events.filter((e) => e.payload.recipient === 'ann@hooks-rcpt.test')
    assert.deepEqual(
      ofAnn.map((e) => [e.type, e.payload.replyCode, e.payload.attempt]),
      [
        ['message.deferred', 451, 1],
        ['message.delivered', 250, 2],
      ],
    )
    assert.equal(ofAnn[0]!.payload.messageId, ann.messageId)
    const bounced = events.find((e) => e.type === 'message.bounced')
    assert.ok(bounced, 'a bounce event')
    assert.equal(bounced.payload.recipient, 'nobody@hooks-rcpt.test')
    assert.equal(bounced.payload.messageId, nobody.messageId)
    assert.equal(bounced.payload.permanent, true)
    assert.equal(bounced.payload.status, '5.1.1')
    // No endpoint, no event.
    assert.equal((await eventsOf(quiet)).length, 0)
  })
})
