import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { feedbackEvents, inboundMessages, members, suppressions } from '@atmos/db'
import { computeReputation } from '@atmos/reputation'
import { and, eq, isNull } from 'drizzle-orm'
import { ReporterCheckUnavailable } from '../src/process/reporter.ts'
import type { FblIngestService } from '../src/service.ts'
import { FeedbackProviders, PROVIDER_DOMAIN, STRANGER_DOMAIN } from './feedback-provider.ts'
import {
  addMember,
  deliveredVolume,
  deliverProcessed,
  type Harness,
  harness,
  POOL_DOMAIN,
  type Spooled,
  spool,
  startService,
  type TestMember,
  waitFor,
} from './helpers.ts'
import { arf } from './reports.ts'

// Reports come from strangers: every recipient of a member's mail holds valid tokens (the
// X-Atmos-Ref header, the VERP return path). These tests play such a stranger.

let h: Harness
let service: FblIngestService
let port: number
let providers: FeedbackProviders
const FBL = `fbl@${POOL_DOMAIN}`

before(async () => {
  h = await harness('fbl-trust')
  providers = await FeedbackProviders.start()
  service = await startService({ ...h.env, ...providers.env() })
  port = service.ctx.listener!.address!.port
})
after(async () => {
  await service?.destroy()
  await providers?.close()
  await h?.close()
})

/** Sends and waits until the worker has finished the stored message. */
function deliver(to: string, message: string, from = '') {
  return deliverProcessed(h, port, to, message, from)
}

const eventsOfMember = (memberId: number) =>
  h.db.select().from(feedbackEvents).where(eq(feedbackEvents.memberId, memberId))

async function standing(memberId: number, address: string) {
  const [s] = await h.db
    .select()
    .from(suppressions)
    .where(and(eq(suppressions.memberId, memberId), eq(suppressions.address, address), isNull(suppressions.removedAt)))
  return s
}

async function statusOf(m: TestMember): Promise<string | undefined> {
  const [row] = await h.db.select().from(members).where(eq(members.id, m.id))
  return row?.status
}

/** A complaint about one spooled message, as a Yahoo-shaped ARF report. */
const complaint = (sent: Spooled, extra: { originalRcptTo?: string | string[]; feedbackType?: string } = {}) =>
  arf({ to: FBL, returnedHeaders: [`Subject: Your code`, `X-Atmos-Ref: ${sent.ref}`].join('\r\n'), ...extra })

/** A DSN naming each of `recipients` as failed, in one report (returned to the VERP address). */
function dsnFor(sent: Spooled, recipients: string[], status = '5.1.1', diagnostic = '550 5.1.1 User unknown'): string {
  const b = 'dsn-many'
  return [
    'From: Mail Delivery System <MAILER-DAEMON@mx.remote.example>',
    `To: ${sent.returnPath}`,
    'Subject: Undelivered Mail Returned to Sender',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${b}"`,
    '',
    `--${b}`,
    'Content-Type: text/plain',
    '',
    'Your message could not be delivered.',
    '',
    `--${b}`,
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.remote.example',
    ...recipients.flatMap((r) => [
      '',
      `Final-Recipient: rfc822; ${r}`,
      'Action: failed',
      `Status: ${status}`,
      `Diagnostic-Code: smtp; ${diagnostic}`,
    ]),
    '',
    `--${b}`,
    'Content-Type: text/rfc822-headers',
    '',
    'Subject: hello',
    '',
    `--${b}--`,
    '',
  ].join('\r\n')
}

describe('one message, one vote', () => {
  it('a DSN listing the spooled recipient 500 times records one hard bounce; its replay records nothing', async () => {
    const member = await addMember(h.db)
    await deliveredVolume(h, member, 20)
    const sent = await spool(h, member, 'gone@remote.example')
    const report = dsnFor(sent, Array(500).fill('gone@remote.example'))
    const first = await deliver(sent.returnPath, report)
    const again = await deliver(sent.returnPath, report)
    assert.equal(first.state, 'processed')
    assert.equal(again.state, 'processed', 'the replay is kept, linked, as evidence')
    const events = await eventsOfMember(member.id)
    assert.equal(events.length, 1, 'one event for the one spooled recipient')
    assert.equal(events[0]?.type, 'hard_bounce')
    assert.equal(events[0]?.inboundId, first.id)
    assert.equal(events[0]?.messageId, sent.messageId)
    const rep = await computeReputation(h.db, member.id)
    assert.equal(rep.windows['24h'].hardBounces, 1)
    assert.equal((await standing(member.id, 'gone@remote.example'))?.reason, 'hard_bounce')
  })

  it('a replayed provider complaint counts once: three copies of one report cannot suspend', async () => {
    const member = await addMember(h.db)
    // 0.3 % suspends: 2 complaints in 600 delivered would (0.33 %), 1 does not (0.17 %).
    await deliveredVolume(h, member, 600)
    const sent = await spool(h, member, 'reader@remote.example')
    const signed = await providers.sign(complaint(sent))
    const rows = []
    for (let i = 0; i < 3; i++) rows.push(await deliver(FBL, signed))
    assert.deepEqual(
      rows.map((r) => r.state),
      ['processed', 'processed', 'processed'],
    )
    const events = await eventsOfMember(member.id)
    assert.equal(events.length, 1)
    assert.equal(events[0]?.type, 'complaint')
    assert.equal((events[0]!.details as { reporter: string }).reporter, 'testfbl')
    const rep = await computeReputation(h.db, member.id)
    assert.equal(rep.windows['24h'].complaints, 1)
    assert.equal(await statusOf(member), 'active')
  })

  it('a report naming other addresses acts only on the recipient the token names; the rest is evidence', async () => {
    const member = await addMember(h.db)
    const sent = await spool(h, member, 'real@remote.example')
    const victims = ['victim1@remote.example', 'victim2@remote.example']
    const row = await deliver(
      FBL,
      await providers.sign(complaint(sent, { originalRcptTo: [...victims, 'real@remote.example'] })),
    )
    const events = await eventsOfMember(member.id)
    assert.equal(events.length, 1)
    assert.equal(events[0]?.recipient, 'real@remote.example')
    assert.equal(events[0]?.inboundId, row.id)
    assert.deepEqual((events[0]!.details as { reported: string[] }).reported, victims)
    assert.equal((await standing(member.id, 'real@remote.example'))?.reason, 'complaint')
    for (const v of victims) assert.equal(await standing(member.id, v), undefined, `${v} is not suppressed`)

    // A DSN about the token's message that lists only other addresses says nothing sure about
    // its recipient: recorded as no hard bounce, nobody suppressed.
    const other = await spool(h, member, 'kept@remote.example')
    await deliver(other.returnPath, dsnFor(other, victims))
    const [bounce] = (await eventsOfMember(member.id)).filter((e) => e.messageId === other.messageId)
    assert.equal(bounce?.type, 'soft_bounce')
    assert.equal(bounce?.recipient, 'kept@remote.example')
    assert.equal(await standing(member.id, 'kept@remote.example'), undefined)
    for (const v of victims) assert.equal(await standing(member.id, v), undefined)
  })
})

describe('complaints count only from a configured feedback-loop provider', () => {
  it('unsigned, stranger-signed or tampered complaints are recorded for the operator, never counted', async () => {
    const member = await addMember(h.db)
    await deliveredVolume(h, member, 600)
    const cases: { name: string; message: (s: Spooled) => Promise<string>; from?: string; why: RegExp }[] = [
      // Yahoo's From header and Feedback-Type, but no signature: anyone can write that.
      { name: 'unsigned', message: async (s) => complaint(s), why: /null MAIL FROM/ },
      {
        name: 'stranger',
        message: (s) => providers.sign(complaint(s), STRANGER_DOMAIN),
        why: new RegExp(`DKIM d=${STRANGER_DOMAIN} is no configured provider's`),
      },
      // The stranger's own server passes SPF for its own domain: no provider's envelope either.
      {
        name: 'stranger envelope',
        message: async (s) => complaint(s),
        from: `fbl@${STRANGER_DOMAIN}`,
        why: new RegExp(`MAIL FROM ${STRANGER_DOMAIN} is no configured provider's`),
      },
      {
        name: 'tampered',
        message: async (s) =>
          (await providers.sign(complaint(s))).replace('Feedback-Type: abuse', 'Feedback-Type: fraud'),
        why: new RegExp(`DKIM d=${PROVIDER_DOMAIN} (fail|neutral)`),
      },
    ]
    for (const c of cases) {
      const sent = await spool(h, member, `${c.name.replace(' ', '-')}@remote.example`)
      await deliver(FBL, await c.message(sent), c.from)
      const [event] = (await eventsOfMember(member.id)).filter((e) => e.messageId === sent.messageId)
      assert.equal(event?.type, 'complaint', c.name)
      const details = event?.details as { counted: boolean; reporter: string | null; notCounted: string }
      assert.equal(details.counted, false, c.name)
      assert.equal(details.reporter, null, c.name)
      assert.match(details.notCounted, /no configured feedback-loop provider/, c.name)
      assert.match(details.notCounted, c.why, c.name)
      assert.equal(await standing(member.id, sent.recipient), undefined, `${c.name}: no suppression`)
    }
    const rep = await computeReputation(h.db, member.id)
    assert.equal(rep.windows['24h'].complaints, 0, '4 complaints in 604 would be 0.66 %: none count')
    assert.equal(await statusOf(member), 'active')
  })

  it('a complaint DKIM-signed by the provider, or sent from its SPF-authenticated envelope, counts and suspends', async () => {
    const member = await addMember(h.db)
    await deliveredVolume(h, member, 600)
    const bySignature = await spool(h, member, 'one@remote.example')
    await deliver(FBL, await providers.sign(complaint(bySignature)))
    const byEnvelope = await spool(h, member, 'two@remote.example')
    await deliver(FBL, complaint(byEnvelope), `feedback@${PROVIDER_DOMAIN}`)
    const events = await eventsOfMember(member.id)
    assert.deepEqual(events.map((e) => (e.details as { reporterAuth: string }).reporterAuth).sort(), [
      `dkim ${PROVIDER_DOMAIN}`,
      `spf ${PROVIDER_DOMAIN}`,
    ])
    assert.equal((await standing(member.id, 'one@remote.example'))?.reason, 'complaint')
    assert.equal((await standing(member.id, 'two@remote.example'))?.reason, 'complaint')
    await waitFor('suspension', async () => (await statusOf(member)) === 'suspended')
    const queried = providers.dns.queries.map((q) => q.name.toLowerCase())
    assert.ok(queried.includes(`fbl1._domainkey.${PROVIDER_DOMAIN}`), 'the DKIM key came from the test zone')
  })

  it("a provider's DNS failing leaves the report waiting for a retry, not recorded as uncounted", async () => {
    const member = await addMember(h.db)
    const sent = await spool(h, member, 'later@remote.example')
    const raw = Buffer.from(await providers.sign(complaint(sent)))
    // Stored as the listener stores it, but with no job: this test runs the processor itself.
    const [row] = await h.db
      .insert(inboundMessages)
      .values({ mailFrom: '', rcptTo: [FBL], size: raw.length, raw, remoteAddress: '127.0.0.1', heloName: 'mx.test' })
      .returning({ id: inboundMessages.id })
    const processor = service.ctx.workers!.processor!
    const keyName = `fbl1._domainkey.${PROVIDER_DOMAIN}`
    const key = providers.dns.zone[keyName]!
    providers.dns.zone[keyName] = { ...key, behaviour: 'servfail' }
    try {
      await assert.rejects(processor.process(row!.id), ReporterCheckUnavailable)
    } finally {
      providers.dns.zone[keyName] = key
    }
    const [waiting] = await h.db.select().from(inboundMessages).where(eq(inboundMessages.id, row!.id))
    assert.equal(waiting?.state, 'received', 'kept for the retry')
    assert.equal((await eventsOfMember(member.id)).length, 0)

    assert.equal((await processor.process(row!.id)).outcome, 'processed')
    const [event] = await eventsOfMember(member.id)
    assert.equal((event!.details as { reporter: string }).reporter, 'testfbl')
  })
})

describe('unsubscribes are not complaints', () => {
  it('an ARF opt-out suppresses the recipient as unsubscribe and never counts', async () => {
    const member = await addMember(h.db)
    await deliveredVolume(h, member, 600)
    for (const feedbackType of ['opt-out', 'unsubscribe']) {
      const sent = await spool(h, member, `${feedbackType}@remote.example`)
      await deliver(FBL, await providers.sign(complaint(sent, { feedbackType })))
      const [event] = (await eventsOfMember(member.id)).filter((e) => e.messageId === sent.messageId)
      assert.equal(event?.type, 'unsubscribe', feedbackType)
      assert.equal(event?.feedbackType, feedbackType)
      const s = await standing(member.id, sent.recipient)
      assert.equal(s?.reason, 'unsubscribe')
      assert.equal(s?.expiresAt, null)
    }
    const rep = await computeReputation(h.db, member.id)
    assert.equal(rep.windows['24h'].complaints, 0)
    assert.equal(await statusOf(member), 'active')
  })

  it("Apple Mail's one-click unsubscribe to the VERP address suppresses as unsubscribe", async () => {
    const member = await addMember(h.db)
    const sent = await spool(h, member, 'apple.user@icloud.example')
    const row = await deliver(
      sent.returnPath,
      [
        'From: Apple User <apple.user@icloud.example>',
        `To: ${sent.returnPath}`,
        'Subject: ',
        'X-Apple-Unsubscribe: true',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'Apple Mail sent this email to unsubscribe from the message "Your code".',
        '',
      ].join('\r\n'),
      'apple.user@icloud.example',
    )
    assert.equal(row.state, 'processed')
    const [event] = await eventsOfMember(member.id)
    assert.equal(event?.type, 'unsubscribe')
    assert.equal(event?.recipient, 'apple.user@icloud.example')
    assert.equal((await standing(member.id, 'apple.user@icloud.example'))?.reason, 'unsubscribe')
  })
})
