import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Pool } from '@atmos/db'
import { deliverMessage, TypedQueue } from '@atmos/queues'
import { type MxSink, type TestDnsServer, testRedis } from '@atmos/testkit'
import {
  type DeliveryWorld,
  enqueueDelivery,
  eventually,
  final,
  recipient,
  seedMember,
  spoolMessage,
  startDelivery,
  startDeliveryWorld,
} from './delivery-helpers.ts'

// One relay delivery role in this process against loopback MX sinks on 127.0.0.2–4 (one
// port, as the relay has one mxPort), an authoritative DNS server and the real Postgres
// and Redis. Each test uses its own recipient domain.

let world: DeliveryWorld
let sql: Pool
let dns: TestDnsServer
let sinks: Record<string, MxSink>
let stopDelivery: () => Promise<void>
let isSlowedDown: (site: string) => Promise<boolean>
let memberId: number

before(async () => {
  world = await startDeliveryWorld(
    'delivery',
    { a: '127.0.0.2', b: '127.0.0.3', c: '127.0.0.4' },
    {
      'mx-a.sinks.test': { A: ['127.0.0.2'] },
      'mx-b.sinks.test': { A: ['127.0.0.3'] },
      'mx-c.sinks.test': { A: ['127.0.0.4'] },
      // Nothing listens on 127.0.0.5: connections are refused.
      'mx-dead.sinks.test': { A: ['127.0.0.5'] },
    },
  )
  ;({ sql, dns, sinks } = world)
  const running = await startDelivery(world.env())
  stopDelivery = running.stop
  isSlowedDown = (site) => running.delivery.limiter.isSlowedDown(site)
  memberId = await seedMember(sql, 'member.example')
})

after(async () => {
  await stopDelivery?.()
  await world?.close()
})

/** Points a domain's MX at sinks: `[preference, host]`. */
function mx(domain: string, hosts: Array<[number, string]>) {
  dns.set(domain, { MX: hosts.map(([priority, exchange]) => ({ priority, exchange })) })
}

async function send(to: string, opts: { expiresInMs?: number } = {}) {
  const spooled = await spoolMessage(sql, { memberId, to, ...opts })
  await enqueueDelivery(world.prefix, [spooled.messageId])
  return spooled
}

async function attempts(recipientId: number) {
  return sql<{ outcome: string; reply_code: number | null; enhanced_status: string | null; mx_host: string | null }[]>`
    select outcome, reply_code, enhanced_status, mx_host from delivery_attempts
    where recipient_id = ${recipientId} order by id`
}

async function events(messageId: string) {
  return sql<
    {
      type: string
      member_id: string
      recipient: string
      status: string | null
      reply_code: number | null
      reason_class: string
      source: string
    }[]
  >`select type, member_id::text, recipient, status, reply_code, reason_class, source
    from feedback_events where message_id = ${messageId}`
}

async function suppression(address: string) {
  const [row] = await sql<{ reason: string; expires_at: Date | null; event_id: string | null }[]>`
    select reason, expires_at, event_id::text from suppressions
    where member_id = ${memberId} and address = ${address} and removed_at is null`
  return row
}

describe('delivery', () => {
  it('delivers once when the MX answers 4xx, then 2xx on the retry', async () => {
    mx('greylist.test', [[10, 'mx-a.sinks.test']])
    let refusals = 0
    sinks.a!.onRcpt = (to) =>
      to === 'ann@greylist.test' && refusals++ === 0 ? { code: 451, text: '4.3.0 Local problem, retry' } : undefined
    const { messageId, recipientId } = await send('ann@greylist.test')

    const row = await final(sql, recipientId)
    assert.equal(row.state, 'delivered')
    assert.equal(row.attempts, 2)
    assert.equal(sinks.a!.to('ann@greylist.test').length, 1)
    const tries = await attempts(recipientId)
    assert.deepEqual(
      tries.map((t) => [t.outcome, t.reply_code, t.mx_host]),
      [
        ['deferred', 451, 'mx-a.sinks.test'],
        ['delivered', 250, 'mx-a.sinks.test'],
      ],
    )
    assert.equal(tries[0]?.enhanced_status, '4.3.0')
    const [msg] = await sql<
      { state: string; done_at: Date | null }[]
    >`select state, done_at from messages where id = ${messageId}`
    assert.equal(msg?.state, 'done')
    assert.ok(msg?.done_at)
    // The body went out as spooled, over STARTTLS (the sink's certificate is self-signed).
    const got = sinks.a!.to('ann@greylist.test')[0]!
    assert.match(got.raw, /^Subject: test$/m)
    assert.equal(got.secure, true)
    assert.match(got.mailFrom, /^b\+[a-z0-9]+@bounces\.atmos\.localhost$/)
    // Still exactly one after a while: the retry job is gone, the reconciler finds nothing due.
    await new Promise((r) => setTimeout(r, 1200))
    assert.equal(sinks.a!.to('ann@greylist.test').length, 1)
  })

  it('delivers every message a job names when it names several, each once', async () => {
    // One job for what one submission batch spooled: a recipient already delivered (a
    // message named twice, or delivered meanwhile) is not claimed again.
    mx('batch.test', [[10, 'mx-a.sinks.test']])
    const spooled = []
    for (const to of ['one@batch.test', 'two@batch.test', 'three@batch.test']) {
      spooled.push(await spoolMessage(sql, { memberId, to }))
    }
    const ids = spooled.map((s) => s.messageId)
    const redis = testRedis()
    const queue = new TypedQueue(deliverMessage, redis, world.prefix)
    try {
      await queue.enqueue({ messageIds: [...ids, ids[0]!] })
      for (const s of spooled) assert.equal((await final(sql, s.recipientId)).state, 'delivered')
      const [done] = await sql<{ n: number }[]>`
        select count(*)::int as n from messages where id = any(${ids}::uuid[]) and state = 'done'`
      assert.equal(done?.n, 3)
      // A second job naming them all again claims nothing: every recipient is finished.
      const job = await queue.enqueue({ messageIds: ids })
      await eventually(async () => ((await job.isCompleted()) ? true : undefined))
      for (const to of ['one@batch.test', 'two@batch.test', 'three@batch.test']) {
        assert.equal(sinks.a!.to(to).length, 1, to)
      }
    } finally {
      await queue.close()
      await redis.quit()
    }
  })

  it('records a hard bounce and suppresses the address on 550 5.1.1', async () => {
    mx('unknown.test', [[10, 'mx-a.sinks.test']])
    sinks.a!.onRcpt = (to) => (to === 'nobody@unknown.test' ? { code: 550, text: '5.1.1 User unknown' } : undefined)
    const { messageId, recipientId } = await send('nobody@unknown.test')

    const row = await final(sql, recipientId)
    assert.equal(row.state, 'bounced')
    assert.equal(row.attempts, 1)
    assert.match(row.last_reply ?? '', /550 5\.1\.1 User unknown/)
    const [event, ...more] = await events(messageId)
    assert.equal(more.length, 0)
    assert.deepEqual(event, {
      type: 'hard_bounce',
      member_id: String(memberId),
      recipient: 'nobody@unknown.test',
      status: '5.1.1',
      reply_code: 550,
      reason_class: 'userunknown',
      source: 'delivery',
    })
    const s = await suppression('nobody@unknown.test')
    assert.equal(s?.reason, 'hard_bounce')
    assert.ok(s?.event_id)
    // Default term: 30 days.
    const days = ((s?.expires_at?.getTime() ?? 0) - Date.now()) / 86_400_000
    assert.ok(days > 29.9 && days <= 30, `suppressed for ${days} days`)
    assert.equal(sinks.a!.to('nobody@unknown.test').length, 0)
  })

  it('records a soft bounce without suppression on a 5xx for policy', async () => {
    mx('policy.test', [[10, 'mx-b.sinks.test']])
    sinks.b!.onMessage = (to) =>
      to === 'pat@policy.test' ? { code: 550, text: '5.7.1 Message rejected due to content policy' } : undefined
    const { messageId, recipientId } = await send('pat@policy.test')

    const row = await final(sql, recipientId)
    assert.equal(row.state, 'bounced')
    const [event] = await events(messageId)
    assert.equal(event?.type, 'soft_bounce')
    assert.equal(event?.status, '5.7.1')
    assert.equal(event?.reply_code, 550)
    assert.equal(await suppression('pat@policy.test'), undefined)
  })

  it('fails permanently on a null MX, without connecting anywhere', async () => {
    dns.set('nullmx.test', { MX: [{ priority: 0, exchange: '.' }], A: ['127.0.0.2'] })
    const before = sinks.a!.sessions
    const { messageId, recipientId } = await send('x@nullmx.test')

    const row = await final(sql, recipientId)
    assert.equal(row.state, 'bounced')
    const [attempt] = await attempts(recipientId)
    assert.equal(attempt?.outcome, 'failed')
    assert.equal(attempt?.reply_code, 556)
    assert.equal(attempt?.enhanced_status, '5.1.10')
    assert.equal(attempt?.mx_host, null)
    const [event] = await events(messageId)
    assert.equal(event?.source, 'delivery')
    assert.equal(sinks.a!.sessions, before)
  })

  it('falls back to the A record when a domain has no MX', async () => {
    dns.set('bare.test', { A: ['127.0.0.3'] })
    const { recipientId } = await send('bea@bare.test')

    assert.equal((await final(sql, recipientId)).state, 'delivered')
    assert.equal(sinks.b!.to('bea@bare.test').length, 1)
    const [attempt] = await attempts(recipientId)
    assert.equal(attempt?.mx_host, 'bare.test')
  })

  it('bounces a domain that does not exist', async () => {
    const { recipientId } = await send('who@no-such-domain.test')
    assert.equal((await final(sql, recipientId)).state, 'bounced')
    const [attempt] = await attempts(recipientId)
    assert.equal(attempt?.enhanced_status, '5.1.2')
  })

  it('tries MX hosts by preference, and the next one when the first refuses connections', async () => {
    // Listed out of order: preference decides, not the order of the answer.
    mx('ordered.test', [
      [30, 'mx-a.sinks.test'],
      [5, 'mx-c.sinks.test'],
      [10, 'mx-b.sinks.test'],
    ])
    mx('fallback.test', [
      [20, 'mx-b.sinks.test'],
      [10, 'mx-dead.sinks.test'],
      [30, 'mx-c.sinks.test'],
    ])
    const ordered = await send('olga@ordered.test')
    const fallback = await send('fred@fallback.test')

    assert.equal((await final(sql, ordered.recipientId)).state, 'delivered')
    assert.equal(sinks.c!.to('olga@ordered.test').length, 1)
    assert.equal((await final(sql, fallback.recipientId)).state, 'delivered')
    assert.equal(sinks.b!.to('fred@fallback.test').length, 1)
    assert.equal(sinks.c!.to('fred@fallback.test').length, 0)
    const [attempt] = await attempts(fallback.recipientId)
    assert.equal(attempt?.mx_host, 'mx-b.sinks.test')
    assert.equal(attempt?.outcome, 'delivered')
  })

  it('defers on a temporary DNS failure and delivers once DNS answers', async () => {
    mx('flaky-dns.test', [[10, 'mx-a.sinks.test']])
    dns.behave('flaky-dns.test', { MX: 'servfail' })
    const { recipientId } = await send('fay@flaky-dns.test')

    await eventually(async () => ((await attempts(recipientId)).length > 0 ? true : undefined))
    const [first] = await attempts(recipientId)
    assert.equal(first?.outcome, 'deferred')
    assert.equal(first?.reply_code, null)
    assert.notEqual((await recipient(sql, recipientId))?.state, 'bounced')
    dns.behave('flaky-dns.test', undefined)

    assert.equal((await final(sql, recipientId)).state, 'delivered')
    assert.equal(sinks.a!.to('fay@flaky-dns.test').length, 1)
  })

  it('expires a message past its age, with an event, and never tries one already expired', async () => {
    mx('always-later.test', [[10, 'mx-b.sinks.test']])
    sinks.b!.onRcpt = (to) => (to === 'tim@always-later.test' ? { code: 452, text: '4.2.2 Mailbox full' } : undefined)
    const retried = await send('tim@always-later.test', { expiresInMs: 1500 })
    const stale = await send('old@always-later.test', { expiresInMs: -1000 })

    const row = await final(sql, retried.recipientId)
    assert.equal(row.state, 'expired')
    assert.ok(row.attempts >= 2, `${row.attempts} attempts`)
    const [event] = await events(retried.messageId)
    assert.equal(event?.type, 'soft_bounce')
    assert.equal(event?.reason_class, 'expired')
    assert.equal(event?.status, '4.2.2')
    assert.equal(event?.reply_code, 452)
    assert.equal(await suppression('tim@always-later.test'), undefined)

    const staleRow = await final(sql, stale.recipientId)
    assert.equal(staleRow.state, 'expired')
    assert.equal(staleRow.attempts, 0)
    assert.equal((await attempts(stale.recipientId)).length, 0)
    const [staleEvent] = await events(stale.messageId)
    assert.equal(staleEvent?.reason_class, 'expired')
    assert.equal(sinks.b!.to('old@always-later.test').length, 0)
  })

  it('slows a site down when it defers for reputation, and still delivers', async () => {
    mx('throttled.test', [[10, 'mx-c.sinks.test']])
    let refusals = 0
    sinks.c!.onMessage = (to) =>
      to === 'rae@throttled.test' && refusals++ === 0
        ? { code: 421, text: '4.7.28 Unusual rate of mail, try again later' }
        : undefined
    const { recipientId } = await send('rae@throttled.test')

    // The sink counts its refusal before the relay has read it and slowed the site down.
    await eventually(async () => ((await isSlowedDown('mx:sinks.test')) ? true : undefined), 15_000, 'the slow-down')
    assert.ok(refusals > 0)
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    assert.equal(sinks.c!.to('rae@throttled.test').length, 1)
    const tries = await attempts(recipientId)
    assert.deepEqual(
      tries.map((t) => [t.outcome, t.reply_code]),
      [
        ['deferred', 421],
        ['delivered', 250],
      ],
    )
  })
})
