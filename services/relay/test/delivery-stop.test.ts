import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createDb, type Pool } from '@atmos/db'
import { removeSuppression, suppress } from '@atmos/reputation'
import type { MxSink, TestDnsServer } from '@atmos/testkit'
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

// Mail already queued stops when its member is suspended or its recipient suppressed after
// it was accepted: the claim ends such recipients as failed (the relay's own decision, not a
// bounce), and a message with nothing left to try is done.

let world: DeliveryWorld
let sql: Pool
let dns: TestDnsServer
let sink: MxSink
let stopDelivery: () => Promise<void>

before(async () => {
  world = await startDeliveryWorld('stop', { a: '127.0.0.2' }, { 'mx.stop.test': { A: ['127.0.0.2'] } })
  ;({ sql, dns } = world)
  sink = world.sinks.a!
  const running = await startDelivery(world.env())
  stopDelivery = running.stop
})

after(async () => {
  await stopDelivery?.()
  await world?.close()
})

function mx(domain: string) {
  dns.set(domain, { MX: [{ priority: 10, exchange: 'mx.stop.test' }] })
}

async function addRecipient(messageId: string, address: string): Promise<number> {
  const [row] = await sql<{ id: string }[]>`
    insert into message_recipients (message_id, address, domain)
    values (${messageId}, ${address}, ${address.split('@')[1]!}) returning id::text`
  return Number(row?.id)
}

async function messageState(messageId: string): Promise<string | undefined> {
  const [row] = await sql<{ state: string }[]>`select state from messages where id = ${messageId}`
  return row?.state
}

async function eventsOf(messageId: string): Promise<number> {
  const [row] = await sql<
    { n: number }[]
  >`select count(*)::int as n from feedback_events where message_id = ${messageId}`
  return row?.n ?? 0
}

async function suppressionsOf(memberId: number): Promise<number> {
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from suppressions where member_id = ${memberId}`
  return row?.n ?? 0
}

async function suspend(memberId: number) {
  await sql`update members set status = 'suspended', status_reason = 'complaint rate 0.4% over 24h', suspended_at = now()
            where id = ${memberId}`
}

describe('queued mail of a suspended member or to a suppressed address', () => {
  it('ends a suspended member’s queued recipients as failed with the reason, and their messages done', async () => {
    mx('suspended.test')
    const memberId = await seedMember(sql, 'suspended-member.example')
    const one = await spoolMessage(sql, { memberId, to: 'sam@suspended.test' })
    const two = await spoolMessage(sql, { memberId, to: 'sue@suspended.test' })
    const twoMore = await addRecipient(two.messageId, 'sid@suspended.test')
    await suspend(memberId)
    await enqueueDelivery(world.prefix, [one.messageId, two.messageId])

    for (const id of [one.recipientId, two.recipientId, twoMore]) {
      const row = await final(sql, id)
      assert.equal(row.state, 'failed')
      assert.equal(row.attempts, 0, 'no attempt was made')
      assert.equal(row.last_reply, 'not delivered: the sending member is suspended (complaint rate 0.4% over 24h)')
    }
    await eventually(
      async () => ((await messageState(two.messageId)) === 'done' ? true : undefined),
      15_000,
      'the message done',
    )
    assert.equal(await messageState(one.messageId), 'done')
    assert.equal(sink.to('sam@suspended.test').length + sink.to('sue@suspended.test').length, 0)
    assert.equal(sink.to('sid@suspended.test').length, 0)
    const [attempts] = await sql<{ n: number }[]>`
      select count(*)::int as n from delivery_attempts where message_id in ${sql([one.messageId, two.messageId])}`
    assert.equal(attempts?.n, 0)
    assert.equal(await eventsOf(one.messageId), 0, 'not a bounce: no feedback event')
    assert.equal(await suppressionsOf(memberId), 0, 'and no suppression')
  })

  it('stops a deferred recipient at its next try once the member is suspended', async () => {
    mx('later.test')
    const memberId = await seedMember(sql, 'later-member.example')
    sink.onRcpt = (to) => (to === 'lee@later.test' ? { code: 451, text: '4.3.0 Try again' } : undefined)
    const { messageId, recipientId } = await spoolMessage(sql, { memberId, to: 'lee@later.test' })
    await enqueueDelivery(world.prefix, [messageId])
    await eventually(
      async () => {
        const [row] = await sql<{ n: number }[]>`
          select count(*)::int as n from delivery_attempts where recipient_id = ${recipientId} and outcome = 'deferred'`
        return (row?.n ?? 0) > 0 ? true : undefined
      },
      15_000,
      'a deferral',
    )
    await suspend(memberId)

    const row = await final(sql, recipientId)
    assert.equal(row.state, 'failed')
    assert.match(row.last_reply ?? '', /member is suspended/)
    assert.equal(
      await eventually(async () => ((await messageState(messageId)) === 'done' ? 'done' : undefined)),
      'done',
    )
    assert.equal(await eventsOf(messageId), 0)
    sink.onRcpt = () => undefined
  })

  it('stops a recipient suppressed after it was queued and delivers the message’s others', async () => {
    mx('suppressed.test')
    const memberId = await seedMember(sql, 'suppressing-member.example')
    const { messageId, recipientId } = await spoolMessage(sql, { memberId, to: 'Gone@Suppressed.test' })
    const other = await addRecipient(messageId, 'here@suppressed.test')
    const db = createDb(sql)
    await suppress(db, { memberId, address: 'gone@suppressed.test', reason: 'hard_bounce', detail: 'test' })
    // Lifted or lapsed entries do not stop anything.
    const lifted = await spoolMessage(sql, { memberId, to: 'lifted@suppressed.test' })
    await suppress(db, { memberId, address: 'lifted@suppressed.test', reason: 'complaint' })
    await removeSuppression(db, { memberId, address: 'lifted@suppressed.test', by: 'test' })
    const lapsed = await spoolMessage(sql, { memberId, to: 'lapsed@suppressed.test' })
    await suppress(db, { memberId, address: 'lapsed@suppressed.test', reason: 'hard_bounce', bounceForMs: -1000 })
    const before = await suppressionsOf(memberId)
    await enqueueDelivery(world.prefix, [messageId, lifted.messageId, lapsed.messageId])

    const row = await final(sql, recipientId)
    assert.equal(row.state, 'failed')
    assert.equal(row.attempts, 0)
    const today = new Date().toISOString().slice(0, 10)
    assert.equal(
      row.last_reply,
      `not delivered: the recipient is on the member's suppression list (hard_bounce since ${today})`,
    )
    assert.equal((await final(sql, other)).state, 'delivered')
    assert.equal(sink.to('here@suppressed.test').length, 1)
    assert.equal(sink.to('gone@suppressed.test').length, 0)
    assert.equal(
      await eventually(async () => ((await messageState(messageId)) === 'done' ? 'done' : undefined)),
      'done',
    )
    assert.equal((await final(sql, lifted.recipientId)).state, 'delivered')
    assert.equal((await final(sql, lapsed.recipientId)).state, 'delivered')
    assert.equal(await eventsOf(messageId), 0)
    assert.equal(await suppressionsOf(memberId), before, 'no new suppression')
  })

  it('does not stop the pool’s own mail, which has no member', async () => {
    mx('pool.test')
    const memberId = await seedMember(sql, 'pool-lookalike.example')
    const { messageId, recipientId } = await spoolMessage(sql, { memberId, to: 'ops@pool.test' })
    await sql`update messages set member_id = null where id = ${messageId}`
    await suspend(memberId)
    await enqueueDelivery(world.prefix, [messageId])
    assert.equal((await final(sql, recipientId)).state, 'delivered')
  })
})
