import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { emitEvent, parseSecret, rotateSecret, verifySignature } from '@atmos/webhook-events'
import { Webhook } from 'standardwebhooks'
import type { WebhooksService } from '../src/service.ts'
import { addEndpoint, addMember, delivery, type Harness, harness, Receiver, startService, waitFor } from './helpers.ts'

describe('webhooks dispatcher', () => {
  let h: Harness
  let service: WebhooksService
  const receiver = new Receiver()
  let url: string

  before(async () => {
    h = await harness()
    url = await receiver.start()
    service = await startService(h)
  })
  after(async () => {
    await service?.destroy()
    await receiver.stop()
    await h?.close()
  })

  it('retries through two failures, then delivers an event signed as Standard Webhooks says', async () => {
    const member = await addMember(h.db)
    const ep = await addEndpoint(h, member.id, url)
    receiver.received.length = 0
    receiver.answer = (n) => (n <= 2 ? { status: 503 } : { status: 200 })
    const id = await emitEvent(h.db, {
      memberId: member.id,
      type: 'message.delivered',
      data: { messageId: 'm-1', recipient: 'a@example.org' },
    })
    assert.ok(id?.startsWith('msg_'), 'the event is written')
    const row = await waitFor('the delivery', async () => {
      const d = await delivery(h.db, id!)
      return d?.state === 'delivered' ? d : undefined
    })
    assert.equal(row.attempts, 3)
    assert.equal(row.last_status, 200)
    assert.equal(receiver.received.length, 3)
    // The same message every time: id, body; each attempt signed anew with its timestamp.
    for (const r of receiver.received) {
      assert.equal(r.headers['webhook-id'], id)
      assert.equal(r.body, receiver.received[0]!.body)
      // The independent verifier (npm standardwebhooks) accepts it.
      const payload = new Webhook(ep.secret).verify(r.body, {
        'webhook-id': String(r.headers['webhook-id']),
        'webhook-timestamp': String(r.headers['webhook-timestamp']),
        'webhook-signature': String(r.headers['webhook-signature']),
      }) as { type: string; timestamp: string; data: Record<string, unknown> }
      assert.equal(payload.type, 'message.delivered')
      assert.deepEqual(payload.data, { messageId: 'm-1', recipient: 'a@example.org' })
      assert.ok(!Number.isNaN(Date.parse(payload.timestamp)))
    }
    // Backoff: the retries came after the schedule's waits (100 ms, then 200 ms, each ±10 %).
    const [a, b, c] = receiver.received.map((r) => r.at) as [number, number, number]
    assert.ok(b - a >= 85, `first retry after ${b - a} ms`)
    assert.ok(c - b >= 175, `second retry after ${c - b} ms`)
  })

  it('signs with both secrets during a rotation, so a receiver holding either verifies', async () => {
    const member = await addMember(h.db)
    const ep = await addEndpoint(h, member.id, url)
    const fresh = await rotateSecret(h.db.$client, h.keyring, { memberId: member.id, id: ep.id, graceMs: 3_600_000 })
    assert.ok(fresh && fresh !== ep.secret)
    receiver.received.length = 0
    receiver.answer = () => ({ status: 204 })
    const id = await emitEvent(h.db, { memberId: member.id, type: 'message.delivered', data: { n: 1 } })
    await waitFor('the delivery', async () => (await delivery(h.db, id!))?.state === 'delivered')
    const r = receiver.received[0]!
    const headers = {
      id: String(r.headers['webhook-id']),
      timestamp: String(r.headers['webhook-timestamp']),
      signature: String(r.headers['webhook-signature']),
    }
    assert.equal(headers.signature.split(' ').length, 2)
    assert.ok(verifySignature(parseSecret(fresh), headers, r.body))
    assert.ok(verifySignature(parseSecret(ep.secret), headers, r.body))
    assert.ok(!verifySignature(parseSecret(ep.secret), { ...headers, id: 'msg_other' }, r.body))
  })

  it('sends nothing for an event type the endpoint did not choose, and nothing to another member', async () => {
    const member = await addMember(h.db)
    const other = await addMember(h.db)
    await addEndpoint(h, member.id, url, ['message.bounced'])
    await addEndpoint(h, other.id, url, ['message.delivered'])
    assert.equal(await emitEvent(h.db, { memberId: member.id, type: 'message.delivered', data: {} }), null)
    const [n] = await h.db.$client<{ n: number }[]>`
      select count(*)::int as n from webhook_events where member_id = ${member.id}`
    assert.equal(n!.n, 0)
  })

  it('does not follow a redirect: a 3xx is a failure with its reason', async () => {
    const member = await addMember(h.db)
    await addEndpoint(h, member.id, url)
    receiver.received.length = 0
    receiver.answer = () => ({ status: 302, headers: { location: 'http://169.254.169.254/latest/meta-data' } })
    const id = await emitEvent(h.db, { memberId: member.id, type: 'message.delivered', data: {} })
    const row = await waitFor('the failed delivery', async () => {
      const d = await delivery(h.db, id!)
      return d?.state === 'failed' ? d : undefined
    })
    assert.equal(row.attempts, 4)
    assert.equal(row.last_status, 302)
    assert.match(row.last_error ?? '', /redirects are not followed/)
    assert.equal(receiver.received.length, 4)
  })
})

describe('webhooks dispatcher: bounds and disabling', () => {
  let h: Harness
  let service: WebhooksService
  const receiver = new Receiver()
  let url: string

  before(async () => {
    h = await harness()
    url = await receiver.start()
    service = await startService(h, {
      retrySchedule: ['50ms'],
      timeout: '300ms',
      disableAfterFailures: 2,
      disableAfter: '0s',
    })
  })
  after(async () => {
    await service?.destroy()
    await receiver.stop()
    await h?.close()
  })

  it('gives up on an endpoint that does not answer within the timeout', async () => {
    const member = await addMember(h.db)
    await addEndpoint(h, member.id, url)
    receiver.answer = () => 'hang'
    const id = await emitEvent(h.db, { memberId: member.id, type: 'message.delivered', data: {} })
    const row = await waitFor('the failed delivery', async () => {
      const d = await delivery(h.db, id!)
      return d?.state === 'failed' ? d : undefined
    })
    assert.match(row.last_error ?? '', /timeout after 300 ms/)
  })

  it('disables an endpoint after events in a row failed every attempt, and says why', async () => {
    const member = await addMember(h.db)
    const ep = await addEndpoint(h, member.id, url)
    receiver.answer = () => ({ status: 500 })
    const first = await emitEvent(h.db, { memberId: member.id, type: 'message.delivered', data: { n: 1 } })
    await waitFor('first failed', async () => (await delivery(h.db, first!))?.state === 'failed')
    const [still] = await h.db.$client<{ disabled_at: Date | null }[]>`
      select disabled_at from webhook_endpoints where id = ${ep.id}`
    assert.equal(still!.disabled_at, null)
    const second = await emitEvent(h.db, { memberId: member.id, type: 'message.delivered', data: { n: 2 } })
    const disabled = await waitFor('the endpoint disabled', async () => {
      const [row] = await h.db.$client<{ disabled_at: Date | null; disabled_reason: string | null }[]>`
        select disabled_at, disabled_reason from webhook_endpoints where id = ${ep.id}`
      return row?.disabled_at ? row : undefined
    })
    assert.match(disabled.disabled_reason ?? '', /2 events in a row failed every attempt.*HTTP 500/)
    assert.equal((await delivery(h.db, second!))?.state, 'failed')
    const [audit] = await h.db.$client<{ n: number }[]>`
      select count(*)::int as n from audit_log where action = 'webhook.disabled' and member_id = ${member.id}`
    assert.equal(audit!.n, 1)
    // A disabled endpoint is no longer written to.
    assert.equal(await emitEvent(h.db, { memberId: member.id, type: 'message.delivered', data: {} }), null)
  })
})

describe('webhooks outbox retention', () => {
  let h: Harness
  before(async () => {
    h = await harness()
  })
  after(async () => {
    await h?.close()
  })

  it('purges old events with nothing pending, and keeps the pending and the recent', async () => {
    const { purgeOld } = await import('../src/dispatch/outbox.ts')
    const member = await addMember(h.db)
    await addEndpoint(h, member.id, 'https://hooks.example.net/x')
    const ids = await Promise.all(
      [1, 2, 3].map(() => emitEvent(h.db, { memberId: member.id, type: 'message.delivered', data: {} })),
    )
    const [done, pending, recent] = ids as [string, string, string]
    await h.db
      .$client`update webhook_events set created_at = now() - interval '40 days' where id in ${h.db.$client([done, pending])}`
    await h.db
      .$client`update webhook_deliveries set state = 'delivered' where event_id in ${h.db.$client([done, recent])}`
    assert.equal(await purgeOld(h.db.$client, 30 * 86_400_000, 100), 1)
    const left = await h.db.$client<{ id: string }[]>`select id from webhook_events order by id`
    assert.deepEqual(
      left.map((r) => r.id),
      [pending, recent].sort(),
    )
    assert.equal(await delivery(h.db, done), undefined)
  })
})

describe('webhooks dispatcher: one slow endpoint does not hold every slot', () => {
  let h: Harness
  let service: WebhooksService
  const slow = new Receiver()
  const fast = new Receiver()
  let slowUrl: string
  let fastUrl: string

  before(async () => {
    h = await harness()
    slowUrl = await slow.start()
    fastUrl = await fast.start()
    service = await startService(h, { concurrency: 4, perEndpoint: 2, timeout: '5s', retrySchedule: [] })
  })
  after(async () => {
    await service?.destroy()
    await slow.stop()
    await fast.stop()
    await h?.close()
  })

  it('delivers to a fast endpoint while a hanging one has its share in flight', async () => {
    const a = await addMember(h.db)
    const b = await addMember(h.db)
    await addEndpoint(h, a.id, slowUrl)
    await addEndpoint(h, b.id, fastUrl)
    slow.answer = () => 'hang'
    fast.answer = () => ({ status: 204 })
    for (let i = 0; i < 8; i++) await emitEvent(h.db, { memberId: a.id, type: 'message.delivered', data: { i } })
    const quick = await emitEvent(h.db, { memberId: b.id, type: 'message.delivered', data: {} })
    await waitFor('the fast delivery', async () => (await delivery(h.db, quick!))?.state === 'delivered', 4_000)
    // The hanging endpoint never had more than its share at once.
    assert.ok(slow.received.length <= 2, `${slow.received.length} requests in flight to the slow endpoint`)
  })
})
