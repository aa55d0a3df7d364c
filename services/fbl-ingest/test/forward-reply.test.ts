import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { domains, inboundForwards, inboundMessages, messageRecipients, messages, suppressions } from '@atmos/db'
import { signMessage } from '@atmos/dkim'
import { deliveryEnv, startDelivery } from '@atmos/relay/delivery-harness'
import { MxSink } from '@atmos/testkit'
import { and, eq, isNull, sql } from 'drizzle-orm'
import { authenticate } from 'mailauth'
import { readSrsAddress } from '../src/forwarding/srs.ts'
import type { FblIngestService } from '../src/service.ts'
import { dnsResolver } from '../src/smtp/authenticate.ts'
import {
  addMember,
  BOUNCE_DOMAIN,
  type Harness,
  harness,
  POOL_DOMAIN,
  sendRaw,
  smtpDialog,
  startService,
  type TestMember,
  waitFor,
} from './helpers.ts'
import { dsn } from './reports.ts'

// Replies to a member's domain, end to end on loopback: a sender's signed message reaches
// fbl-ingest's port 25, is stored, forwarded through the relay spool by a real relay delivery
// worker to the forward-to's MX (a sink), and arrives there ARC-sealed by the pool with the
// original DKIM signature intact, from an SRS envelope sender whose bounces come back to
// fbl-ingest and stop there.

const SINK_HOST = '127.0.0.2'
const INBOX = 'inbox.example'
const SENDER = 'sender.example'

let h: Harness
let service: FblIngestService
let port: number
let sink: MxSink
let stopDelivery: () => Promise<void>
let senderKey: Parameters<typeof signMessage>[1][number]

before(async () => {
  h = await harness('fbl-fwd')
  sink = new MxSink({ host: SINK_HOST })
  const mxPort = await sink.start()
  sink.onRcpt = (to) => (to.startsWith('gone') ? { code: 550, text: '5.1.1 No such user' } : undefined)
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  senderKey = { domain: SENDER, selector: 's1', algorithm: 'rsa-sha256', privateKey }
  const spki = publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
  h.dns
    .set(INBOX, { MX: [{ priority: 10, exchange: `mx.${INBOX}` }] })
    .set(`mx.${INBOX}`, { A: [SINK_HOST] })
    .set(`${h.poolKey.selector}._domainkey.${POOL_DOMAIN}`, { TXT: [h.poolKey.txt] })
    .set(BOUNCE_DOMAIN, { TXT: ['v=spf1 ip4:127.0.0.0/8 -all'] })
    .set(SENDER, { TXT: ['v=spf1 ip4:127.0.0.1 -all'] })
    .set(`_dmarc.${SENDER}`, { TXT: ['v=DMARC1; p=reject'] })
    .set(`s1._domainkey.${SENDER}`, { TXT: [`v=DKIM1; k=rsa; p=${spki}`] })
  service = await startService({ ...h.env, ATMOS_FBL_INGEST_FORWARDING_CACHE_TTL: '0' })
  port = service.ctx.listener!.address!.port
  const running = await startDelivery(
    deliveryEnv({
      databaseUrl: h.database.url,
      redisPrefix: h.prefix,
      dnsPort: h.dns.port,
      mxPort,
      extra: {
        ATMOS_LOG_LEVEL: 'silent',
        ATMOS_RELAY_POOL_DOMAIN: POOL_DOMAIN,
        ATMOS_RELAY_POOL_KEK_FILE: h.poolKekFile,
        ATMOS_RELAY_KEK_FILE: '/nonexistent/relay-kek',
        ATMOS_RELAY_DELIVERY_HELO_NAME: `relay.${POOL_DOMAIN}`,
      },
    }),
  )
  stopDelivery = running.stop
})

after(async () => {
  await stopDelivery?.()
  await service?.destroy()
  await sink?.close()
  await h?.close()
})

async function memberForwardingTo(forwardTo: string | null): Promise<TestMember> {
  const m = await addMember(h.db)
  await h.db.update(domains).set({ forwardTo }).where(eq(domains.id, m.domainId))
  return m
}

/** A reply from alice@sender.example, signed by sender.example (whose DMARC is p=reject). */
async function reply(to: string, subject: string, extraHeaders: string[] = [], sign = true): Promise<string> {
  const raw = Buffer.from(
    [
      ...extraHeaders,
      `From: Alice <alice@${SENDER}>`,
      `To: <${to}>`,
      `Subject: ${subject}`,
      `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
      `Message-ID: <${Math.random().toString(36).slice(2)}@${SENDER}>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Thanks for the code. It worked.',
      '',
    ].join('\r\n'),
  )
  return (sign ? await signMessage(raw, [senderKey]) : raw).toString('latin1')
}

async function send(from: string, to: string, message: string): Promise<number> {
  const answer = await sendRaw(port, from, [to], message)
  assert.match(answer, /^250 /, answer)
  return Number(/stored as (\d+)/.exec(answer)?.[1])
}

async function forwardsOf(inboundId: number) {
  return waitFor(`inbound ${inboundId} forwarded or refused`, async () => {
    const rows = await h.db.select().from(inboundForwards).where(eq(inboundForwards.inboundId, inboundId))
    return rows.length ? rows : undefined
  })
}

async function rcpt(address: string): Promise<string> {
  const replies = await smtpDialog(port, ['EHLO client.example', `MAIL FROM:<a@${SENDER}>`, `RCPT TO:<${address}>`])
  return replies[2]!
}

/** A mailauth verdict's result, or undefined when the check did not run. */
const outcome = (v: { status: { result: string } } | false | undefined) => (v ? v.status.result : undefined)

const resolver = () => dnsResolver([h.dns.address], 5000)

describe('replies to members’ domains', () => {
  it('arrive at the forward-to ARC-sealed, from an SRS sender, with the original DKIM still verifying', async () => {
    const member = await memberForwardingTo('owner@inbox.example')
    const original = await reply(`support@${member.domain}`, 'Re: your code')
    const inboundId = await send(`alice@${SENDER}`, `support@${member.domain}`, original)
    const [fwd] = await forwardsOf(inboundId)
    assert.equal(fwd?.state, 'forwarded', fwd?.reason ?? '')
    assert.equal(fwd?.forwardTo, 'owner@inbox.example')
    const got = await waitFor('the forward at the forward-to’s MX', async () => sink.to('owner@inbox.example')[0])

    // The envelope sender is the pool's SRS address for alice, which verifies.
    const srs = readSrsAddress({ secret: h.secret, bounceDomain: BOUNCE_DOMAIN }, got.mailFrom, 21)
    assert.deepEqual(srs, { ok: true, originalSender: `alice@${SENDER}`, ageDays: 0 })
    assert.equal(fwd?.returnPath, got.mailFrom)
    // The message itself, not wrapped: the original bytes end the delivered ones.
    const [stored] = await h.db.select().from(inboundMessages).where(eq(inboundMessages.id, inboundId))
    assert.ok(stored?.raw.toString('latin1').startsWith(original))
    assert.ok(got.raw.endsWith(stored!.raw.toString('latin1')), 'the message as received, byte for byte')
    assert.match(got.raw, /^Received: from mx\.remote\.example \(/m)

    // What the forward-to provider would find: the pool's ARC seal passes and records the
    // original verdicts; the original signature still verifies; SPF passes for the SRS domain.
    const verdict = await authenticate(got.raw, {
      ip: '127.0.0.1',
      helo: `relay.${POOL_DOMAIN}`,
      sender: got.mailFrom,
      mta: `mx.${INBOX}`,
      resolver: resolver(),
      disableBimi: true,
    })
    assert.equal(outcome(verdict.arc), 'pass')
    const dkim = verdict.dkim.results.map((r) => [r.signingDomain, r.status.result])
    assert.deepEqual(
      dkim.find(([d]) => d === SENDER),
      [SENDER, 'pass'],
    )
    assert.deepEqual(
      dkim.find(([d]) => d === POOL_DOMAIN),
      [POOL_DOMAIN, 'pass'],
    )
    assert.equal(outcome(verdict.spf), 'pass')
    assert.equal(outcome(verdict.dmarc), 'pass', 'aligned DKIM of the original')
    // The seal is not decoration: a header changed after it breaks the chain.
    const tampered = await authenticate(got.raw.replace('Subject: Re: your code', 'Subject: Re: your c0de'), {
      ip: '127.0.0.1',
      helo: `relay.${POOL_DOMAIN}`,
      sender: got.mailFrom,
      mta: `mx.${INBOX}`,
      resolver: resolver(),
      disableBimi: true,
    })
    assert.equal(outcome(tampered.arc), 'fail')
    const aar = /^ARC-Authentication-Results: i=1; ([^\r\n]+(?:\r\n[ \t][^\r\n]*)*)/m.exec(got.raw)?.[1] ?? ''
    assert.match(aar, /spf=pass/)
    assert.match(aar, /dmarc=pass/)
    assert.match(
      got.raw,
      new RegExp(`^ARC-Seal: i=1; a=rsa-sha256; t=\\d+; cv=none;\\s+d=${POOL_DOMAIN.replace('.', '\\.')}`, 'm'),
    )

    // The pool's own mail: no member, delivered, nothing counted against the member.
    const [m] = await h.db.select().from(messages).where(eq(messages.id, fwd!.messageId!))
    assert.equal(m?.memberId, null)
    await waitFor('the relay records the forward delivered', async () => {
      const [r] = await h.db.select().from(messageRecipients).where(eq(messageRecipients.messageId, fwd!.messageId!))
      return r?.state === 'delivered'
    })
    const [row] = await h.db.select().from(inboundMessages).where(eq(inboundMessages.id, inboundId))
    assert.deepEqual([row?.kind, row?.state, row?.forwardedMessageId], ['reply', 'forwarded', fwd?.messageId])
  })

  it('forwards a message that fails its own DMARC (p=reject) all the same: the seal says what the pool saw', async () => {
    const member = await memberForwardingTo('owner5@inbox.example')
    // Unsigned, "from" sender.example, handed over with an envelope sender SPF does not allow.
    const forged = await reply(`support@${member.domain}`, 'forged', [], false)
    assert.doesNotMatch(forged, /DKIM-Signature/)
    const inboundId = await send('mallory@elsewhere.example', `support@${member.domain}`, forged)
    const [fwd] = await forwardsOf(inboundId)
    assert.equal(fwd?.state, 'forwarded')
    const got = await waitFor('the forward', async () => sink.to('owner5@inbox.example')[0])
    const aar = /^ARC-Authentication-Results: i=1; ([^\r\n]+(?:\r\n[ \t][^\r\n]*)*)/m.exec(got.raw)?.[1] ?? ''
    assert.match(aar, /dmarc=fail/)
    const verdict = await authenticate(got.raw, {
      ip: '127.0.0.1',
      helo: `relay.${POOL_DOMAIN}`,
      sender: got.mailFrom,
      mta: `mx.${INBOX}`,
      resolver: resolver(),
      disableBimi: true,
    })
    assert.equal(outcome(verdict.arc), 'pass', 'the chain is intact; what it carries is the failure')
    assert.equal(outcome(verdict.dmarc), 'fail')
  })

  it('forwards a bounce to the member’s domain with a null sender, never an SRS one', async () => {
    const member = await memberForwardingTo('owner2@inbox.example')
    const inboundId = await send('', `noreply@${member.domain}`, await reply(`noreply@${member.domain}`, 'bounce'))
    const [fwd] = await forwardsOf(inboundId)
    assert.equal(fwd?.state, 'forwarded')
    assert.equal(fwd?.returnPath, '')
    const got = await waitFor('the forward', async () => sink.to('owner2@inbox.example')[0])
    assert.equal(got.mailFrom, '')
  })

  it('records a forward’s bounce to its SRS address, suppresses the forward-to, and sends nothing on', async () => {
    const member = await memberForwardingTo('owner3@inbox.example')
    const inboundId = await send(
      `alice@${SENDER}`,
      `support@${member.domain}`,
      await reply(`support@${member.domain}`, 'hi'),
    )
    const [fwd] = await forwardsOf(inboundId)
    await waitFor('delivered', async () => sink.to('owner3@inbox.example')[0])
    const spooledBefore = (await h.db.select({ n: sql<number>`count(*)::int` }).from(messages))[0]!.n
    const received = sink.received.length

    // Later, the forward-to's provider gives up on the mailbox and says so to the SRS address.
    const bounceId = await send(
      '',
      fwd!.returnPath,
      dsn({
        to: fwd!.returnPath,
        recipient: 'owner3@inbox.example',
        status: '5.1.1',
        diagnostic: '550 5.1.1 <owner3@inbox.example>: Recipient address rejected: User unknown',
      }),
    )
    const bounced = await waitFor('the bounce recorded', async () => {
      const [b] = await h.db.select().from(inboundForwards).where(eq(inboundForwards.id, fwd!.id))
      return b?.state === 'bounced' ? b : undefined
    })
    assert.equal(bounced.bounceInboundId, bounceId)
    assert.match(bounced.reason ?? '', /^hard bounce: 5\.1\.1 /)
    const [s] = await h.db
      .select()
      .from(suppressions)
      .where(and(eq(suppressions.memberId, member.id), isNull(suppressions.removedAt)))
    assert.deepEqual([s?.address, s?.reason, s?.domainId], ['owner3@inbox.example', 'hard_bounce', member.domainId])
    const [b] = await h.db.select().from(inboundMessages).where(eq(inboundMessages.id, bounceId))
    assert.deepEqual([b?.kind, b?.state, b?.forwardedMessageId], ['dsn', 'processed', null])
    // Nothing onward: no message spooled, none to alice (the original sender) or anyone.
    const spooledAfter = (await h.db.select({ n: sql<number>`count(*)::int` }).from(messages))[0]!.n
    assert.equal(spooledAfter, spooledBefore)
    assert.equal(sink.received.length, received)
    // No member feedback event: a forward is the pool's mail, not the member's sending.
    const events = await h.db.execute<{ n: number }>(sql`select count(*)::int as n from feedback_events`)
    assert.equal(events[0]?.n, 0)
    // And the next reply to the domain is refused at RCPT.
    assert.match(await rcpt(`support@${member.domain}`), /^550 5\.1\.1 /)
  })

  it('attributes a bounce to the forward whose forward-to it names, when one sender’s replies share an SRS address', async () => {
    const first = await memberForwardingTo('owner6@inbox.example')
    const second = await memberForwardingTo('owner7@inbox.example')
    const one = await send(`alice@${SENDER}`, `support@${first.domain}`, await reply(`support@${first.domain}`, 'one'))
    const [f1] = await forwardsOf(one)
    const two = await send(
      `alice@${SENDER}`,
      `support@${second.domain}`,
      await reply(`support@${second.domain}`, 'two'),
    )
    const [f2] = await forwardsOf(two)
    assert.equal(f1?.returnPath, f2?.returnPath, 'the same SRS address: one sender, one day')
    // The older forward's mailbox bounces.
    await send(
      '',
      f1!.returnPath,
      dsn({
        to: f1!.returnPath,
        recipient: 'owner6@inbox.example',
        status: '5.1.1',
        diagnostic: '550 5.1.1 <owner6@inbox.example>: Recipient address rejected: User unknown',
      }),
    )
    await waitFor('the first forward bounced', async () => {
      const [b] = await h.db.select().from(inboundForwards).where(eq(inboundForwards.id, f1!.id))
      return b?.state === 'bounced'
    })
    const [other] = await h.db.select().from(inboundForwards).where(eq(inboundForwards.id, f2!.id))
    assert.equal(other?.state, 'forwarded', 'the newer forward, to another mailbox, is untouched')
    const listed = await h.db
      .select({ memberId: suppressions.memberId, address: suppressions.address })
      .from(suppressions)
      .where(isNull(suppressions.removedAt))
    assert.ok(listed.some((s) => s.memberId === first.id && s.address === 'owner6@inbox.example'))
    assert.ok(!listed.some((s) => s.memberId === second.id))
  })

  it('a forward refused at once by the forward-to’s MX gets no bounce notice, and stops the next', async () => {
    const member = await memberForwardingTo('gone@inbox.example')
    const inboundId = await send(
      `alice@${SENDER}`,
      `support@${member.domain}`,
      await reply(`support@${member.domain}`, 'x'),
    )
    const [fwd] = await forwardsOf(inboundId)
    await waitFor('the relay records the bounce', async () => {
      const [r] = await h.db.select().from(messageRecipients).where(eq(messageRecipients.messageId, fwd!.messageId!))
      return r?.state === 'bounced'
    })
    const [m] = await h.db.select().from(messages).where(eq(messages.id, fwd!.messageId!))
    assert.equal(m?.bounceNoticeId, null, 'the relay sends no notice for the pool’s own mail')
    assert.equal(sink.to(`alice@${SENDER}`).length, 0)
    assert.match(await rcpt(`support@${member.domain}`), /^550 5\.1\.1 /)
  })

  it('refuses loops: our own seals already on the message, or a forward-to that comes back', async () => {
    const member = await memberForwardingTo('owner4@inbox.example')
    const seals = [1, 2, 3].map(
      (i) => `ARC-Seal: i=${i}; a=rsa-sha256; t=1; cv=pass; d=${POOL_DOMAIN}; s=${h.poolKey.selector}; b=x`,
    )
    const looped = await send(
      `alice@${SENDER}`,
      `support@${member.domain}`,
      await reply(`support@${member.domain}`, 'loop', seals),
    )
    const [l] = await forwardsOf(looped)
    assert.equal(l?.state, 'refused')
    assert.match(l?.reason ?? '', /3 ARC seals of the pool: a loop/)
    assert.equal(l?.messageId, null)

    // Two members' domains forwarding to each other.
    const a = await addMember(h.db)
    const b = await addMember(h.db)
    await h.db
      .update(domains)
      .set({ forwardTo: `in@${b.domain}` })
      .where(eq(domains.id, a.domainId))
    await h.db
      .update(domains)
      .set({ forwardTo: `in@${a.domain}` })
      .where(eq(domains.id, b.domainId))
    const id = await send(`alice@${SENDER}`, `support@${a.domain}`, await reply(`support@${a.domain}`, 'ping'))
    const [f] = await forwardsOf(id)
    assert.equal(f?.state, 'refused')
    assert.match(f?.reason ?? '', /comes back here: a loop/)
  })
})
