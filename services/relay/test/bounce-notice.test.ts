import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Pool } from '@atmos/db'
import { createDkimKey, type NewDkimKey } from '@atmos/dkim'
import { classifyMessage } from '@atmos/mail-feedback'
import { loadKeyring } from '@atmos/secrets'
import type { MxSink } from '@atmos/testkit'
import { dkimVerify } from 'mailauth'
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
import { POOL_DOMAIN, relayFiles } from './helpers.ts'

// A member is told when its mail bounces: an RFC 3464 notice from the pool's MAILER-DAEMON
// to the envelope sender, with a null envelope sender, DKIM-signed by the pool, spooled
// with the bounce and delivered by the same workers to the member's domain (a sink here).

let world: DeliveryWorld
let sql: Pool
let rcptSink: MxSink
let memberSink: MxSink
let poolKey: NewDkimKey
let stopDelivery: () => Promise<void>
let memberId: number

before(async () => {
  world = await startDeliveryWorld(
    'notice',
    { rcpt: '127.0.0.2', member: '127.0.0.3' },
    {
      'mx-rcpt.notice.test': { A: ['127.0.0.2'] },
      'mx-member.notice.test': { A: ['127.0.0.3'] },
      'member.example': { MX: [{ priority: 10, exchange: 'mx-member.notice.test' }] },
      'bounces.test': { MX: [{ priority: 10, exchange: 'mx-rcpt.notice.test' }] },
    },
  )
  sql = world.sql
  rcptSink = world.sinks.rcpt!
  memberSink = world.sinks.member!
  const files = relayFiles()
  poolKey = await createDkimKey(sql, loadKeyring(files.poolKekFile), {
    memberId: null,
    domain: POOL_DOMAIN,
    selector: 'pool1',
  })
  const running = await startDelivery(
    world.env({
      // The delivery role holds only the pool's KEK: it signs as the pool, never as a member.
      ATMOS_RELAY_POOL_KEK_FILE: files.poolKekFile,
      ATMOS_RELAY_KEK_FILE: '/nonexistent/relay-kek',
      ATMOS_RELAY_POOL_DOMAIN: POOL_DOMAIN,
      ATMOS_RELAY_DELIVERY_HELO_NAME: 'relay.pool.example',
    }),
  )
  stopDelivery = running.stop
  memberId = await seedMember(sql, 'member.example')
  // Every address at bounces.test is unknown; "later@" only ever defers.
  rcptSink.onRcpt = (to) =>
    to.startsWith('later')
      ? { code: 452, text: '4.2.2 Mailbox full' }
      : to.endsWith('@bounces.test')
        ? { code: 550, text: '5.1.1 User unknown' }
        : undefined
})

after(async () => {
  await stopDelivery?.()
  await world?.close()
})

async function send(from: string, to: string, opts: { expiresInMs?: number; subject?: string } = {}) {
  const spooled = await spoolMessage(sql, { memberId, from, to, ...opts })
  return spooled
}

async function noticeOf(messageId: string): Promise<string | null> {
  const [row] = await sql<{ id: string | null }[]>`select bounce_notice_id as id from messages where id = ${messageId}`
  return row?.id ?? null
}

async function noticesTo(address: string): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    select count(*)::int as n from messages m join message_recipients r on r.message_id = m.id
    where m.member_id is null and r.address = ${address}`
  return row?.n ?? 0
}

function verifyAsPool(body: Buffer) {
  return dkimVerify(body, {
    resolver: async (name: string, type: string) => {
      if (type === 'TXT' && name === `${poolKey.selector}._domainkey.${POOL_DOMAIN}`) return [[poolKey.txt]]
      throw Object.assign(new Error(`no ${type} ${name}`), { code: 'ENOTFOUND' })
    },
  })
}

describe('bounce notices', () => {
  it('tells the sender of a bounced message with a signed RFC 3464 notice, delivered like any mail', async () => {
    const { messageId, recipientId } = await send('alice@member.example', 'nobody@bounces.test', {
      subject: 'Your code is 123456',
    })
    await enqueueDelivery(world.prefix, [messageId])
    assert.equal((await final(sql, recipientId)).state, 'bounced')
    const noticeId = await noticeOf(messageId)
    assert.ok(noticeId, 'the notice is recorded on the message with the bounce')

    const [notice] = await sql<
      { member_id: string | null; envelope_from: string; return_path: string; body: Buffer; address: string }[]
    >`select m.member_id, m.envelope_from, m.return_path, m.body, r.address
      from messages m join message_recipients r on r.message_id = m.id where m.id = ${noticeId}`
    assert.deepEqual(
      [notice?.member_id, notice?.envelope_from, notice?.return_path, notice?.address],
      [null, '', '', 'alice@member.example'],
    )
    const raw = notice!.body
    const text = raw.toString('latin1')
    assert.doesNotMatch(text, /[^\r]\n/, 'CRLF line ends only')
    for (const line of text.split('\r\n')) assert.ok(line.length <= 998, `a line of ${line.length} octets`)
    assert.match(text, /^From: Mail Delivery System <MAILER-DAEMON@pool\.example>\r$/m)
    assert.match(text, /^To: <alice@member\.example>\r$/m)
    assert.match(text, /^Auto-Submitted: auto-replied\r$/m)
    assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status;\r\n\tboundary="[^"]+"\r$/m)
    assert.match(text, /^Content-Type: message\/delivery-status\r$/m)
    for (const field of [
      /^Reporting-MTA: dns; relay\.pool\.example\r$/m,
      /^Arrival-Date: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000\r$/m,
      /^Final-Recipient: rfc822; nobody@bounces\.test\r$/m,
      /^Action: failed\r$/m,
      /^Status: 5\.1\.1\r$/m,
      /^Remote-MTA: dns; mx-rcpt\.notice\.test\r$/m,
      /^Diagnostic-Code: smtp; 550 5\.1\.1 User unknown\r$/m,
      /^Last-Attempt-Date: .+ \+0000\r$/m,
    ]) {
      assert.match(text, field)
    }
    assert.match(text, /^Content-Type: text\/rfc822-headers\r\n\r\n[\s\S]*^Subject: Your code is 123456\r$/m)

    // The pool's signature verifies (d= the pool domain, aligned with From).
    const verified = await verifyAsPool(raw)
    assert.deepEqual(
      verified.results.map((r) => [r.signingDomain, r.status.result]),
      [[POOL_DOMAIN, 'pass']],
    )
    // fbl-ingest's classifier reads it as a bounce of that recipient.
    const c = await classifyMessage(raw)
    assert.equal(c.kind, 'dsn')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.action, r.status, r.hard]),
      [['nobody@bounces.test', 'failed', '5.1.1', true]],
    )

    // Delivered to the member's domain by the same workers, with a null envelope sender.
    const got = await eventually(
      async () => memberSink.to('alice@member.example')[0],
      15_000,
      'the notice at the member’s MX',
    )
    assert.equal(got.mailFrom, '')
    assert.equal(got.raw, raw.toString('utf8'), 'as signed, byte for byte')
    await eventually(
      async () => {
        const [r] = await sql<{ state: string }[]>`select state from message_recipients where message_id = ${noticeId}`
        return r?.state === 'delivered' ? true : undefined
      },
      15_000,
      'the notice recorded as delivered',
    )
  })

  it('sends one notice for an expired message, reported as failed (5.4.7) with the last reply', async () => {
    const { messageId, recipientId } = await send('bob@member.example', 'later@bounces.test', { expiresInMs: 1000 })
    await enqueueDelivery(world.prefix, [messageId])
    assert.equal((await final(sql, recipientId)).state, 'expired')
    const noticeId = await noticeOf(messageId)
    assert.ok(noticeId)
    const [row] = await sql<{ body: Buffer }[]>`select body from messages where id = ${noticeId}`
    const text = row!.body.toString('latin1')
    assert.match(text, /^Status: 5\.4\.7\r$/m)
    assert.match(text, /^Diagnostic-Code: smtp; 452 4\.2\.2 Mailbox full\r$/m)
    const c = await classifyMessage(row!.body)
    assert.equal(c.kind, 'dsn')
    assert.deepEqual(
      c.recipients.map((r) => [r.address, r.action]),
      [['later@bounces.test', 'failed']],
    )
    assert.equal(await noticesTo('bob@member.example'), 1)
  })

  it('sends at most one notice a message, however many of its recipients bounce', async () => {
    const { messageId, recipientId } = await send('carol@member.example', 'one@bounces.test')
    const [second] = await sql<{ id: string }[]>`
      insert into message_recipients (message_id, address, domain)
      values (${messageId}, 'two@bounces.test', 'bounces.test') returning id::text`
    await enqueueDelivery(world.prefix, [messageId])
    assert.equal((await final(sql, recipientId)).state, 'bounced')
    assert.equal((await final(sql, Number(second?.id))).state, 'bounced')
    const [events] = await sql<{ n: number }[]>`
      select count(*)::int as n from feedback_events where message_id = ${messageId}`
    assert.equal(events?.n, 2, 'both bounces recorded')
    assert.ok(await noticeOf(messageId))
    assert.equal(await noticesTo('carol@member.example'), 1)
  })

  it('sends the notice to the domain’s forward-to address when the member set one', async () => {
    await sql`update domains set forward_to = 'Inbox@Member.example' where member_id = ${memberId}`
    try {
      const { messageId, recipientId } = await send('noreply@member.example', 'nobody5@bounces.test')
      await enqueueDelivery(world.prefix, [messageId])
      assert.equal((await final(sql, recipientId)).state, 'bounced')
      const noticeId = await noticeOf(messageId)
      assert.ok(noticeId)
      const [row] = await sql<{ address: string; body: Buffer }[]>`
        select r.address, m.body from messages m join message_recipients r on r.message_id = m.id where m.id = ${noticeId}`
      assert.equal(row?.address, 'Inbox@Member.example')
      assert.match(row!.body.toString('latin1'), /^To: <Inbox@Member\.example>\r$/m)
      assert.equal(await noticesTo('noreply@member.example'), 0, 'not to the envelope sender')
      await eventually(
        async () => memberSink.to('inbox@member.example')[0] ?? memberSink.to('Inbox@Member.example')[0],
        15_000,
        'the notice at the forward-to’s MX',
      )
    } finally {
      await sql`update domains set forward_to = null where member_id = ${memberId}`
    }
  })

  // fbl-ingest's forwards of replies to members' domains are such mail (member_id null): a
  // forward that bounces is never answered with a notice to anyone.
  it('sends none to a null sender, and none for the pool’s own mail', async () => {
    const nullSender = await send('dave@member.example', 'nobody2@bounces.test')
    await sql`update messages set envelope_from = '' where id = ${nullSender.messageId}`
    const pool = await send('erin@member.example', 'nobody3@bounces.test')
    await sql`update messages set member_id = null where id = ${pool.messageId}`
    await enqueueDelivery(world.prefix, [nullSender.messageId, pool.messageId])
    assert.equal((await final(sql, nullSender.recipientId)).state, 'bounced')
    assert.equal((await final(sql, pool.recipientId)).state, 'bounced')
    // The notice would have been spooled in the transaction that recorded the bounce.
    assert.equal(await noticeOf(nullSender.messageId), null)
    assert.equal(await noticeOf(pool.messageId), null)
    assert.equal(await noticesTo('dave@member.example'), 0)
    assert.equal(await noticesTo('erin@member.example'), 0)
  })

  it('records the bounce all the same when the notice cannot be signed (no KEK), and counts it', async () => {
    // Last: the workers are replaced by ones whose KEK file is missing.
    await stopDelivery()
    const running = await startDelivery(
      world.env({ ATMOS_RELAY_POOL_KEK_FILE: '/nonexistent/kek', ATMOS_RELAY_POOL_DOMAIN: POOL_DOMAIN }),
    )
    stopDelivery = running.stop
    const { messageId, recipientId } = await send('fay@member.example', 'nobody4@bounces.test')
    await enqueueDelivery(world.prefix, [messageId])
    assert.equal((await final(sql, recipientId)).state, 'bounced')
    const [events] = await sql<{ n: number }[]>`
      select count(*)::int as n from feedback_events where message_id = ${messageId}`
    assert.equal(events?.n, 1)
    assert.equal(await noticeOf(messageId), null)
    assert.equal(await noticesTo('fay@member.example'), 0)
    const failed = (await running.delivery.metrics.bounceNotices.get()).values.find((v) => v.labels.result === 'failed')
    assert.equal(failed?.value, 1)
  })
})
