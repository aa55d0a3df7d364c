import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import type { Pool } from '@atmos/db'
import type { MxSink, ServiceProcess } from '@atmos/testkit'
import {
  type DeliveryWorld,
  enqueueDelivery,
  eventually,
  seedMember,
  spoolMessage,
  startDeliveryWorld,
} from './delivery-helpers.ts'

let world: DeliveryWorld
let sql: Pool
let sink: MxSink

before(async () => {
  // Two domains on the same MX host: one site, one limit.
  world = await startDeliveryWorld(
    'shaping',
    { a: '127.0.0.2' },
    {
      'one.test': { MX: [{ priority: 10, exchange: 'mx.shared-host.test' }] },
      'two.test': { MX: [{ priority: 10, exchange: 'mx.shared-host.test' }] },
      'mx.shared-host.test': { A: ['127.0.0.2'] },
    },
  )
  sql = world.sql
  sink = world.sinks.a!
})

after(async () => {
  await world?.close()
})

it('never opens more sessions to a site than its limit, across two delivery processes', async () => {
  const limit = 2
  const perConnection = 4
  sink.dataDelayMs = 80
  const env = world.env({
    ATMOS_RELAY_DELIVERY_CONCURRENCY: '8',
    ATMOS_RELAY_DELIVERY_SHAPING_MAX_CONNECTIONS: String(limit),
    ATMOS_RELAY_DELIVERY_SHAPING_MESSAGES_PER_CONNECTION: String(perConnection),
    ATMOS_RELAY_DELIVERY_SHAPING_SLOT_WAIT: '300ms',
  })
  const procs: ServiceProcess[] = []
  for (let i = 0; i < 2; i++) procs.push(await world.startProcess(env))
  // Spooled once both run, so that both take jobs from the start.
  const memberId = await seedMember(sql, 'member.example')
  const ids: string[] = []
  const recipientIds: number[] = []
  for (let i = 0; i < 48; i++) {
    const spooled = await spoolMessage(sql, { memberId, to: `user${i}@${i % 2 ? 'one' : 'two'}.test` })
    ids.push(spooled.messageId)
    recipientIds.push(spooled.recipientId)
  }
  await enqueueDelivery(world.prefix, ids)

  await eventually(
    async () => {
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from message_recipients where state = 'delivered'`
      return row?.n === ids.length ? true : undefined
    },
    60_000,
    'every message delivered',
  )
  assert.ok(sink.maxOpen <= limit, `the sink saw ${sink.maxOpen} sessions at once (limit ${limit})`)
  assert.ok(sink.maxOpen >= 1)
  assert.equal(sink.received.length, ids.length, 'each message exactly once')
  assert.equal(new Set(sink.received.flatMap((r) => r.rcptTo)).size, ids.length)
  assert.ok(Math.max(...sink.perSession.values()) <= perConnection, 'no session carried more than its share')
  assert.ok(sink.sessions >= ids.length / perConnection)
  // Both processes took part. A process logs "delivered" after the row is committed, and its
  // output reaches this process later still: wait for the lines rather than read them now.
  const deliveredBy = () => procs.map((p) => p.logs.filter((l) => l.msg === 'delivered').length)
  await eventually(
    async () => (deliveredBy().reduce((a, b) => a + b, 0) >= ids.length ? true : undefined),
    15_000,
    'a "delivered" line for every message',
  ).catch(() => {})
  assert.equal(
    deliveredBy().reduce((a, b) => a + b, 0),
    ids.length,
  )
  assert.ok(
    deliveredBy().every((n) => n > 0),
    `delivered per process: ${deliveredBy().join(', ')}\n${procs.map((p) => p.dump().slice(-3000)).join('\n----\n')}`,
  )
})
