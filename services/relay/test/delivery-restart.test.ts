import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import type { Pool } from '@atmos/db'
import { deletePrefix, type MxSink, type ServiceProcess, testRedis } from '@atmos/testkit'
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
  world = await startDeliveryWorld(
    'restart',
    { a: '127.0.0.2' },
    {
      'restart.test': { MX: [{ priority: 10, exchange: 'mx.restart.test' }] },
      'mx.restart.test': { A: ['127.0.0.2'] },
    },
  )
  sql = world.sql
  sink = world.sinks.a!
})

after(async () => {
  await world?.close()
})

async function metric(proc: ServiceProcess, name: string): Promise<number> {
  const text = await (await fetch(`${await proc.opsUrl()}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
  return line ? Number(line.split(' ').at(-1)) : 0
}

it('loses no spooled message when a delivery process is killed mid-delivery and Redis is flushed', async (t) => {
  const count = 40
  // Slow replies to DATA keep sessions busy, so the kill lands on messages in flight.
  sink.dataDelayMs = 150
  const env = world.env({
    ATMOS_RELAY_DELIVERY_CONCURRENCY: '6',
    ATMOS_RELAY_DELIVERY_SHAPING_MAX_CONNECTIONS: '4',
  })
  const first = await world.startProcess(env)

  const memberId = await seedMember(sql, 'member.example')
  const spooled = []
  for (let i = 0; i < count; i++) spooled.push(await spoolMessage(sql, { memberId, to: `r${i}@restart.test` }))
  await enqueueDelivery(
    world.prefix,
    spooled.map((s) => s.messageId),
  )

  await eventually(
    async () => (sink.received.length >= 8 && sink.open > 0 ? true : undefined),
    30_000,
    'deliveries under way',
  )
  const killed = await first.stop('SIGKILL')
  assert.equal(killed.signal, 'SIGKILL')
  const deliveredBeforeKill = sink.received.length
  // Redis keeps nothing on disk here: everything under the prefix is gone, jobs and slots alike.
  const redis = testRedis()
  const flushed = await deletePrefix(redis, world.prefix)
  await redis.quit()
  assert.ok(flushed > 0)
  const [pending] = await sql<{ n: number }[]>`
    select count(*)::int as n from message_recipients where state in ('queued', 'deferred')`
  assert.ok((pending?.n ?? 0) > 0, 'the kill left work undone')

  const second = await world.startProcess(env)
  await eventually(
    async () => {
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from message_recipients where state = 'delivered'`
      return row?.n === count ? true : undefined
    },
    60_000,
    'every spooled message delivered after the restart',
  )

  // None lost: every recipient got its message at least once, and every message is done.
  const got = new Map<string, number>()
  for (const r of sink.received) for (const to of r.rcptTo) got.set(to, (got.get(to) ?? 0) + 1)
  for (let i = 0; i < count; i++) assert.ok((got.get(`r${i}@restart.test`) ?? 0) >= 1, `r${i} never arrived`)
  const [notDone] = await sql<{ n: number }[]>`select count(*)::int as n from messages where state <> 'done'`
  assert.equal(notDone?.n, 0)

  // Duplicates are possible only for messages in flight at the kill; each is counted and logged.
  const duplicates = sink.received.length - count
  const lapsed = await metric(second, 'atmos_relay_delivery_lapsed_claims_total')
  // Each takeover is counted and then logged; the log line reaches this process after the
  // counter can be read, so wait for the lines to account for the count.
  const takeovers = () => second.logs.filter((l) => String(l.msg).startsWith('took over a recipient'))
  await eventually(
    async () => (takeovers().reduce((n, l) => n + Number(l.lapsed ?? 0), 0) >= lapsed ? true : undefined),
    15_000,
    'a takeover warning for every lapsed claim counted',
  ).catch(() => {})
  const warned = takeovers().length
  t.diagnostic(
    `delivered before the kill: ${deliveredBeforeKill}; duplicates at the sink: ${duplicates}; lapsed claims taken over: ${lapsed}`,
  )
  assert.ok(lapsed >= duplicates, `${duplicates} duplicates but only ${lapsed} lapsed claims counted`)
  assert.ok(lapsed > 0, 'the kill interrupted at least one attempt')
  assert.ok(warned > 0 && warned <= lapsed, `${warned} takeover warnings for ${lapsed} lapsed claims`)
  assert.ok(lapsed <= 6, 'no more takeovers than attempts the killed process could have had in flight')
  assert.equal((await second.stop('SIGTERM')).code, 0)
})
