import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createDb, type Pool } from '@atmos/db'
import { deliverMessage, TypedQueue } from '@atmos/queues'
import { createLogger } from '@atmos/runtime'
import { createTestDatabase, deletePrefix, type TestDatabase, testRedis, testRedisPrefix } from '@atmos/testkit'
import { Registry } from 'prom-client'
import { createDeliveryMetrics } from '../src/delivery/metrics.ts'
import { Reconciler } from '../src/delivery/reconciler.ts'
import { type AttemptRecord, DeliverySpool } from '../src/delivery/spool.ts'
import { seedMember, spoolMessage, testPool } from './delivery-helpers.ts'

// The delivery spool against the real Postgres: concurrent claims and finishes share a
// statement (a batch); each caller must still get exactly its own result.

let tdb: TestDatabase
let sql: Pool
let spool: DeliverySpool
let memberId: number

before(async () => {
  tdb = await createTestDatabase()
  sql = testPool(tdb.url)
  spool = new DeliverySpool({ db: createDb(sql), maxAgeMs: 86_400_000, suppressForMs: 86_400_000 })
  memberId = await seedMember(sql, 'member.example')
})

after(async () => {
  await sql?.end({ timeout: 5 })
  await tdb?.drop()
})

const attempt = (outcome: AttemptRecord['outcome'], reply: string): AttemptRecord => ({
  startedAt: new Date(),
  durationMs: 12,
  mxHost: 'mx.example',
  mxAddress: '127.0.0.1',
  replyCode: Number(reply.slice(0, 3)),
  enhancedStatus: reply.split(' ')[1],
  reply,
  outcome,
})

describe('delivery spool, batched', () => {
  it('claims concurrently requested messages in one go, each recipient once, each caller its own', async () => {
    const spooled = await Promise.all(
      Array.from({ length: 6 }, (_, i) => spoolMessage(sql, { memberId, to: `u${i}@claim.test` })),
    )
    // The same tick: one batch. The first message is asked for twice.
    const claims = await Promise.all([
      ...spooled.map((s) => spool.claim(s.messageId, undefined, 60_000)),
      spool.claim(spooled[0]!.messageId, undefined, 60_000),
    ])
    const got = claims.slice(0, 6)
    for (const [i, c] of got.entries()) {
      assert.ok(c, `message ${i} claimed`)
      assert.equal(c.message.id, spooled[i]!.messageId)
      assert.deepEqual(
        c.recipients.map((r) => [r.id, r.address, r.attempt, r.lapsed]),
        [[spooled[i]!.recipientId, `u${i}@claim.test`, 1, 0]],
      )
      assert.match(c.message.body.toString(), new RegExp(`To: <u${i}@claim.test>`))
    }
    assert.equal(claims[6], undefined, 'the second request for a message finds nothing due')
    // Claimed: not due again while the lease runs.
    assert.equal(await spool.claim(spooled[1]!.messageId, undefined, 60_000), undefined)
  })

  it('finishes concurrently, fenced per recipient, and marks done the messages with nothing left', async () => {
    const spooled = await Promise.all(
      Array.from({ length: 4 }, (_, i) => spoolMessage(sql, { memberId, to: `f${i}@finish.test` })),
    )
    const claims = await Promise.all(spooled.map((s) => spool.claim(s.messageId, undefined, 60_000)))
    const [a, b, c, d] = claims.map((x) => x!.recipients[0]!)
    const results = await Promise.all([
      spool.finish(a!, attempt('delivered', '250 2.0.0 ok'), { state: 'delivered' }),
      spool.finish(b!, attempt('deferred', '451 4.3.0 later, "quoted", {braced}'), {
        state: 'deferred',
        retryInMs: 120_000,
      }),
      // A claim that lapsed (another worker took the recipient over): its attempt is recorded, nothing else.
      spool.finish({ ...c!, attempt: c!.attempt + 1 }, attempt('delivered', '250 2.0.0 ok'), { state: 'delivered' }),
      spool.finish(d!, attempt('delivered', '250 2.0.0 ok'), { state: 'delivered' }),
    ])
    assert.deepEqual(
      results.map((r) => [r.applied, r.messageDone]),
      [
        [true, true],
        [true, false],
        [false, false],
        [true, true],
      ],
    )
    const rows = await sql<{ id: string; state: string; retry: boolean; last_reply: string | null; done: string }[]>`
      select r.id::text, r.state, r.next_attempt_at > now() + interval '100 seconds' as retry, r.last_reply,
             m.state as done
      from message_recipients r join messages m on m.id = r.message_id
      where r.id in ${sql([a!.id, b!.id, c!.id, d!.id])}`
    const byId = new Map(rows.map((r) => [Number(r.id), r]))
    const ordered = [a!, b!, c!, d!].map((x) => byId.get(x.id)!)
    assert.deepEqual(
      ordered.map((r) => [r.state, r.done]),
      [
        ['delivered', 'done'],
        ['deferred', 'queued'],
        ['queued', 'queued'],
        ['delivered', 'done'],
      ],
    )
    assert.equal(ordered[1]?.retry, true, 'the deferral is due again after its retry delay')
    assert.equal(ordered[1]?.last_reply, '451 4.3.0 later, "quoted", {braced}', 'reply text kept byte for byte')
    const [attempts] = await sql<{ n: number }[]>`
      select count(*)::int as n from delivery_attempts where recipient_id in ${sql([a!.id, b!.id, c!.id, d!.id])}`
    assert.equal(attempts?.n, 4, 'every attempt recorded, the lapsed one too')
  })

  it('marks a message of two recipients done when both are delivered in one batch', async () => {
    const { messageId, recipientId } = await spoolMessage(sql, { memberId, to: 'one@pair.test' })
    const [second] = await sql<{ id: string }[]>`
      insert into message_recipients (message_id, address, domain)
      values (${messageId}, 'two@pair.test', 'pair.test') returning id::text`
    const claim = await spool.claim(messageId, undefined, 60_000)
    assert.deepEqual(
      claim?.recipients.map((r) => r.id),
      [recipientId, Number(second?.id)],
    )
    const results = await Promise.all(
      claim!.recipients.map((r) => spool.finish(r, attempt('delivered', '250 2.0.0 ok'), { state: 'delivered' })),
    )
    assert.ok(results.every((r) => r.applied && r.messageDone))
    const [m] = await sql<{ state: string }[]>`select state from messages where id = ${messageId}`
    assert.equal(m?.state, 'done')
  })

  it('settles a message whose recipients all finished but which was left queued', async () => {
    const { messageId, recipientId } = await spoolMessage(sql, { memberId, to: 'left@settle.test' })
    await sql`update message_recipients set state = 'delivered' where id = ${recipientId}`
    await sql`update messages set received_at = now() - interval '1 hour' where id = ${messageId}`
    assert.ok((await spool.settleFinished(60_000)) >= 1)
    const [m] = await sql<{ state: string }[]>`select state from messages where id = ${messageId}`
    assert.equal(m?.state, 'done')
  })

  it('bounces the pool’s own mail (no member) as an event that suppresses nothing', async () => {
    const { messageId, recipientId } = await spoolMessage(sql, { memberId, to: 'operator@inbox.test' })
    await sql`update messages set member_id = null where id = ${messageId}`
    const claim = await spool.claim(messageId, undefined, 60_000)
    assert.equal(claim?.message.memberId, null)
    const r = claim!.recipients[0]!
    const done = await spool.finish(r, attempt('failed', '550 5.1.1 no such user'), {
      state: 'bounced',
      bounce: {
        type: 'hard_bounce',
        memberId: null,
        messageId,
        recipient: r.address,
        status: '5.1.1',
        replyCode: 550,
        reasonClass: 'userunknown',
        source: 'delivery',
      },
    })
    assert.deepEqual([done.applied, done.messageDone, done.bounce?.suppressed], [true, true, false])
    const [event] = await sql<{ member_id: string | null; type: string }[]>`
      select member_id, type from feedback_events where id = ${done.bounce!.eventId}`
    assert.deepEqual(event, { member_id: null, type: 'hard_bounce' })
    const [n] = await sql<
      { n: number }[]
    >`select count(*)::int as n from suppressions where address = 'operator@inbox.test'`
    assert.equal(n?.n, 0)
    const [row] = await sql<{ state: string }[]>`select state from message_recipients where id = ${recipientId}`
    assert.equal(row?.state, 'bounced')
  })

  it('suppresses a member’s recipient on a hard bounce of its message', async () => {
    const { messageId } = await spoolMessage(sql, { memberId, to: 'gone@member-bounce.test' })
    const claim = await spool.claim(messageId, undefined, 60_000)
    const r = claim!.recipients[0]!
    const done = await spool.finish(r, attempt('failed', '550 5.1.1 no such user'), {
      state: 'bounced',
      bounce: {
        type: 'hard_bounce',
        memberId,
        messageId,
        recipient: 'Gone@Member-Bounce.test',
        status: '5.1.1',
        replyCode: 550,
        reasonClass: 'userunknown',
        source: 'delivery',
      },
    })
    assert.equal(done.bounce?.suppressed, true)
    const [s] = await sql<{ reason: string; detail: string; days: number }[]>`
      select reason, detail, round(extract(epoch from expires_at - created_at) / 86400)::int as days
      from suppressions where member_id = ${memberId} and address = 'gone@member-bounce.test' and removed_at is null`
    assert.deepEqual(s, { reason: 'hard_bounce', detail: 'userunknown (550 5.1.1) via delivery', days: 1 })
  })

  it('drops the bodies of messages done past the retention, keeping the rows for attribution', async () => {
    const old = await spoolMessage(sql, { memberId, to: 'old@retention.test' })
    const recent = await spoolMessage(sql, { memberId, to: 'recent@retention.test' })
    const pending = await spoolMessage(sql, { memberId, to: 'pending@retention.test' })
    await sql`update message_recipients set state = 'delivered' where message_id in ${sql([old.messageId, recent.messageId])}`
    await sql`update messages set state = 'done', done_at = now() - interval '8 days' where id = ${old.messageId}`
    await sql`update messages set state = 'done', done_at = now() - interval '1 day' where id = ${recent.messageId}`
    await sql`update messages set received_at = now() - interval '9 days' where id = ${pending.messageId}`
    const sevenDays = 7 * 86_400_000
    // The delivery reconciler's pass does it, as configured (relay.delivery.bodyRetention).
    const prefix = testRedisPrefix('retention')
    const redis = testRedis()
    const queue = new TypedQueue(deliverMessage, redis, prefix)
    try {
      const reconciler = new Reconciler({
        spool,
        queue,
        intervalMs: 60_000,
        logger: createLogger('test', 'silent'),
        metrics: createDeliveryMetrics(new Registry()),
        bodyRetentionMs: sevenDays,
      })
      await reconciler.reconcile()
    } finally {
      await queue.close()
      await deletePrefix(redis, prefix)
      await redis.quit()
    }
    assert.equal(await spool.purgeBodies(sevenDays, 1000), 0, 'nothing twice')
    const rows = await sql<{ id: string; body: Buffer; size: number; purged: boolean }[]>`
      select id::text, body, size, body_purged_at is not null as purged from messages
      where id in ${sql([old.messageId, recent.messageId, pending.messageId])}`
    const by = new Map(rows.map((r) => [r.id, r]))
    assert.equal(by.get(old.messageId)?.body.length, 0)
    assert.equal(by.get(old.messageId)?.purged, true)
    assert.ok((by.get(old.messageId)?.size ?? 0) > 0, 'the size it had is kept')
    assert.ok((by.get(recent.messageId)?.body.length ?? 0) > 0, 'within the retention: kept')
    assert.ok((by.get(pending.messageId)?.body.length ?? 0) > 0, 'not done: kept, however old')
    const [r] = await sql<
      { address: string }[]
    >`select address from message_recipients where message_id = ${old.messageId}`
    assert.equal(r?.address, 'old@retention.test', 'the recipient row stays for attribution')
  })

  it('drops at most a batch of bodies a call, however many are due', async () => {
    const ids: string[] = []
    for (let i = 0; i < 7; i++)
      ids.push((await spoolMessage(sql, { memberId, to: `batch${i}@retention.test` })).messageId)
    await sql`update message_recipients set state = 'delivered' where message_id in ${sql(ids)}`
    await sql`update messages set state = 'done', done_at = now() - interval '30 days' where id in ${sql(ids)}`
    const day = 86_400_000
    assert.equal(await spool.purgeBodies(day, 2), 2)
    const [{ n } = { n: 0 }] = await sql<{ n: number }[]>`
      select count(*)::int as n from messages where id in ${sql(ids)} and body_purged_at is not null`
    assert.equal(n, 2, 'exactly the batch, not more')
    // Each later call takes two more of the oldest until every one is done.
    for (let pass = 0; pass < 3; pass++) assert.equal(await spool.purgeBodies(day, 2), 2)
    const [{ left } = { left: -1 }] = await sql<{ left: number }[]>`
      select count(*)::int as left from messages where id in ${sql(ids)} and body_purged_at is null`
    assert.equal(left, 0)
  })
})
