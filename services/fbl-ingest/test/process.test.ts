import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  domains,
  feedbackEvents,
  memberStatusChanges,
  members,
  messageRecipients,
  messages,
  quarantinedReports,
  suppressions,
} from '@atmos/db'
import { SigningKeys } from '@atmos/dkim'
import { computeReputation, recordAggregateFeedback } from '@atmos/reputation'
import { loadKeyring } from '@atmos/secrets'
import { and, eq, isNull } from 'drizzle-orm'
import { dkimVerify } from 'mailauth'
import { NoPoolKeyError, prepareForward } from '../src/process/forward.ts'
import type { FblIngestService } from '../src/service.ts'
import { FeedbackProviders, PROVIDER_DOMAIN } from './feedback-provider.ts'
import {
  addDomain,
  addMember,
  deliveredVolume,
  deliverProcessed,
  type Harness,
  harness,
  OPERATOR_INBOX,
  POOL_DOMAIN,
  poolIdentity,
  spool,
  startService,
  waitFor,
} from './helpers.ts'
import { arf, dsn } from './reports.ts'

let h: Harness
let service: FblIngestService
let port: number
let providers: FeedbackProviders
/** The envelope of a report from the configured feedback-loop provider (SPF passes for loopback). */
const PROVIDER_SENDER = `feedback@${PROVIDER_DOMAIN}`

before(async () => {
  h = await harness('fbl-process')
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

async function eventsOf(inboundId: number) {
  return h.db.select().from(feedbackEvents).where(eq(feedbackEvents.inboundId, inboundId))
}

async function standing(memberId: number, address: string) {
  const [s] = await h.db
    .select()
    .from(suppressions)
    .where(and(eq(suppressions.memberId, memberId), eq(suppressions.address, address), isNull(suppressions.removedAt)))
  return s
}

describe('processing inbound reports', () => {
  it('a DSN for a spooled message: hard bounce recorded against the member, recipient suppressed', async () => {
    const member = await addMember(h.db)
    const sent = await spool(h, member, 'gone@remote.example')
    const row = await deliver(
      sent.returnPath,
      dsn({
        to: sent.returnPath,
        recipient: 'gone@remote.example',
        status: '5.0.0',
        diagnostic: '550 5.1.1 <gone@remote.example>: Recipient address rejected: User unknown',
      }),
    )
    assert.equal(row.state, 'processed')
    assert.equal(row.kind, 'dsn')
    const [event] = await eventsOf(row.id)
    assert.equal(event?.type, 'hard_bounce')
    assert.equal(event?.memberId, member.id)
    assert.equal(event?.messageId, sent.messageId)
    assert.equal(event?.recipient, 'gone@remote.example')
    assert.equal(event?.status, '5.1.1', 'the diagnostic code is more specific than Status: 5.0.0')
    assert.equal(event?.replyCode, 550)
    assert.equal(event?.source, 'dsn')
    assert.equal((event!.details as { verified: boolean }).verified, true)
    const s = await standing(member.id, 'gone@remote.example')
    assert.equal(s?.reason, 'hard_bounce')
    assert.equal(s?.eventId, event?.id)
    assert.ok(s?.expiresAt && s.expiresAt.getTime() > Date.now() + 29 * 86_400_000)
  })

  it('a policy block is a soft bounce: recorded, address not suppressed; a delayed DSN is no bounce', async () => {
    const member = await addMember(h.db)
    const sent = await spool(h, member, 'fine@remote.example')
    const row = await deliver(
      sent.returnPath,
      dsn({
        to: sent.returnPath,
        recipient: 'fine@remote.example',
        status: '5.7.1',
        diagnostic: '550 5.7.1 Message rejected due to local policy: sender IP listed on a blocklist',
      }),
    )
    const [event] = await eventsOf(row.id)
    assert.equal(event?.type, 'soft_bounce')
    assert.equal(event?.memberId, member.id)
    assert.equal(await standing(member.id, 'fine@remote.example'), undefined)

    const delayed = await deliver(
      sent.returnPath,
      dsn({
        to: sent.returnPath,
        recipient: 'fine@remote.example',
        action: 'delayed',
        status: '4.4.1',
        diagnostic: '421 4.4.1 Connection timed out',
      }),
    )
    assert.equal(delayed.state, 'processed')
    assert.deepEqual(await eventsOf(delayed.id), [])
  })

  it('an ARF complaint with only the original headers is attributed by X-Atmos-Ref and suppresses', async () => {
    const member = await addMember(h.db)
    const sent = await spool(h, member, 'annoyed@yahoo.example')
    const row = await deliver(
      `fbl@${POOL_DOMAIN}`,
      arf({
        to: `fbl@${POOL_DOMAIN}`,
        returnedHeaders: [
          `From: noreply@${member.domain}`,
          'To: redacted@yahoo.example',
          'Subject: Your code',
          `X-Atmos-Ref: ${sent.ref}`,
        ].join('\r\n'),
      }),
      PROVIDER_SENDER,
    )
    assert.equal(row.kind, 'arf')
    assert.equal(row.state, 'processed')
    const [event] = await eventsOf(row.id)
    assert.equal(event?.type, 'complaint')
    assert.equal(event?.feedbackType, 'abuse')
    assert.equal(event?.memberId, member.id)
    assert.equal(event?.messageId, sent.messageId)
    assert.equal(event?.recipient, 'annoyed@yahoo.example', 'the spooled recipient, not the redacted one')
    const s = await standing(member.id, 'annoyed@yahoo.example')
    assert.equal(s?.reason, 'complaint')
    assert.equal(s?.expiresAt, null)
  })

  it('a signed token wins over an unsigned member DID claim that names someone else', async () => {
    const member = await addMember(h.db)
    const bystander = await addMember(h.db)
    const sent = await spool(h, member, 'who@remote.example')
    const row = await deliver(
      `fbl@${POOL_DOMAIN}`,
      arf({
        to: `fbl@${POOL_DOMAIN}`,
        returnedHeaders: [`X-Atmos-Member-Did: ${bystander.did}`, `X-Atmos-Ref: ${sent.ref}`].join('\r\n'),
      }),
    )
    const [event] = await eventsOf(row.id)
    assert.equal(event?.memberId, member.id)
    const details = event?.details as { attributedBy: string; conflicts: string[] }
    assert.equal(details.attributedBy, 'reference')
    assert.match(details.conflicts.join(), new RegExp(bystander.did))
  })

  it('a member with two domains: a bounce of mail sent as the second suppresses on the member’s one list, recording that domain', async () => {
    const first = await addMember(h.db)
    const second = await addDomain(h.db, first, `second-${first.domain}`)
    const sent = await spool(h, second, 'gone2@remote.example')
    const row = await deliver(
      sent.returnPath,
      dsn({ to: sent.returnPath, recipient: 'gone2@remote.example', status: '5.1.1', diagnostic: '550 5.1.1 unknown' }),
    )
    const [event] = await eventsOf(row.id)
    assert.equal(event?.type, 'hard_bounce')
    assert.equal(event?.memberId, first.id)
    const s = await standing(first.id, 'gone2@remote.example')
    assert.equal(s?.domainId, second.domainId, 'the domain whose mail bounced')
    assert.equal(
      s?.memberId,
      first.id,
      'one list over the member’s domains: its first domain may not send there either',
    )
  })

  it('a DKIM d= claim goes to the domain’s live holder; a domain that moved still answers for its old mail by token', async () => {
    const old = await addMember(h.db)
    const moved = await addDomain(h.db, old, `moved-${old.domain}`)
    const sentBefore = await spool(h, moved, 'earlier@remote.example')
    await h.db
      .update(domains)
      .set({ removedAt: new Date(), removedReason: 'moved to another account' })
      .where(eq(domains.id, moved.domainId))
    const holder = await addMember(h.db)
    await addDomain(h.db, holder, moved.domain)
    const signed = (d: string) =>
      `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=${d}; s=atmos1r; h=from; bh=x; b=y`

    // Unsigned: only the DKIM d= of a subdomain of the moved domain. Its holder now is the one named.
    const claim = await deliver(
      `fbl@${POOL_DOMAIN}`,
      arf({
        to: `fbl@${POOL_DOMAIN}`,
        originalRcptTo: 'someone@remote.example',
        returnedHeaders: signed(`news.${moved.domain}`),
      }),
    )
    const [claimed] = await eventsOf(claim.id)
    assert.equal(claimed?.memberId, holder.id)
    assert.equal((claimed!.details as { attributedBy: string }).attributedBy, 'dkim-domain')

    // Signed: the token names the message the old member sent as the domain before it moved.
    const bounce = await deliver(
      sentBefore.returnPath,
      dsn({
        to: sentBefore.returnPath,
        recipient: 'earlier@remote.example',
        status: '5.1.1',
        diagnostic: '550 5.1.1 unknown',
      }),
    )
    const [event] = await eventsOf(bounce.id)
    assert.equal(event?.memberId, old.id, 'the member that sent it, not the domain’s holder now')
    assert.equal((await standing(old.id, 'earlier@remote.example'))?.domainId, moved.domainId)
    assert.equal(await standing(holder.id, 'earlier@remote.example'), undefined)

    // A domain nobody holds any more still names the member that held it last.
    const gone = await addDomain(h.db, old, `gone-${old.domain}`)
    await h.db
      .update(domains)
      .set({ removedAt: new Date(), removedReason: 'given up' })
      .where(eq(domains.id, gone.domainId))
    const orphan = await deliver(
      `fbl@${POOL_DOMAIN}`,
      arf({ to: `fbl@${POOL_DOMAIN}`, originalRcptTo: 'x@remote.example', returnedHeaders: signed(gone.domain) }),
    )
    assert.equal((await eventsOf(orphan.id))[0]?.memberId, old.id)
  })

  it('reports attributed only by unsigned headers are recorded, but neither suppress nor count toward suspension', async () => {
    const victim = await addMember(h.db)
    await deliveredVolume(h, victim, 200)
    // Forged: anyone can write a member's DID into a report; there is no token of ours in it.
    for (let i = 0; i < 5; i++) {
      const row = await deliver(
        `fbl@${POOL_DOMAIN}`,
        arf({
          to: `fbl@${POOL_DOMAIN}`,
          originalRcptTo: `target${i}@remote.example`,
          returnedHeaders: `X-Atmos-Member-Did: ${victim.did}`,
        }),
      )
      const [event] = await eventsOf(row.id)
      assert.equal(event?.type, 'complaint')
      assert.equal(event?.memberId, victim.id, 'kept on record against the member it names')
      assert.equal((event!.details as { verified: boolean }).verified, false)
      assert.equal(await standing(victim.id, `target${i}@remote.example`), undefined, 'no suppression')
    }
    const rep = await computeReputation(h.db, victim.id)
    assert.equal(rep.windows['24h'].complaints, 0, '5 unsigned complaints in 200 would be 2.5 %: none count')
    const [m] = await h.db.select().from(members).where(eq(members.id, victim.id))
    assert.equal(m?.status, 'active')
  })

  it('complaints past the threshold suspend the member, record why and enqueue memberStatusChanged', async () => {
    const member = await addMember(h.db)
    await deliveredVolume(h, member, 600)
    for (let i = 0; i < 2; i++) {
      const sent = await spool(h, member, `c${i}@remote.example`)
      await deliver(
        `fbl@${POOL_DOMAIN}`,
        arf({ to: `fbl@${POOL_DOMAIN}`, returnedHeaders: `X-Atmos-Ref: ${sent.ref}` }),
        PROVIDER_SENDER,
      )
    }
    // Reputation is recomputed just after the events commit: wait for the job to get there.
    const m = await waitFor('suspension', async () => {
      const [row] = await h.db.select().from(members).where(eq(members.id, member.id))
      return row?.status === 'suspended' ? row : undefined
    })
    assert.equal(m?.status, 'suspended', '2 complaints in 602 delivered is 0.33 %')
    assert.match(m?.statusReason ?? '', /complaint rate 0\.33 % over 24h .*suspend threshold of 0\.30 %/)
    const [change] = await h.db
      .select()
      .from(memberStatusChanges)
      .where(and(eq(memberStatusChanges.memberId, member.id), eq(memberStatusChanges.toStatus, 'suspended')))
    assert.equal(change?.actor, 'fbl-ingest')
    assert.equal(change?.fromStatus, 'active')
    const job = JSON.parse(
      (await h.redis.hget(`${h.prefix}:member-status-changed:status-change-${change!.id}`, 'data')) ?? 'null',
    )
    assert.deepEqual(job, { did: member.did, status: 'suspended', reason: m?.statusReason, changeId: change!.id })
  })

  it('an aggregate complaint rate an operator entered is enforced by the reconciler’s re-check', async () => {
    const member = await addMember(h.db)
    await recordAggregateFeedback(h.db, {
      memberId: member.id,
      provider: 'gmail',
      periodStart: new Date(Date.now() - 2 * 86_400_000),
      periodEnd: new Date(Date.now() - 3_600_000),
      complaintRate: 0.005,
      recordedBy: 'operator:test',
    })
    const checked = await service.ctx.workers!.processor!.recheckRecent(60_000)
    assert.ok(checked >= 1)
    const [m] = await h.db.select().from(members).where(eq(members.id, member.id))
    assert.equal(m?.status, 'suspended')
    assert.match(m?.statusReason ?? '', /complaint rate/)
  })

  it('operator mail is forwarded through the relay spool, the original attached intact', async () => {
    const original = [
      'From: Someone <someone@elsewhere.example>',
      `To: abuse@${POOL_DOMAIN}`,
      'Subject: Your pool sent me something odd',
      'Message-ID: <abc@elsewhere.example>',
      '',
      'Hello, please look at this.',
      '',
    ].join('\r\n')
    const row = await deliver(`abuse@${POOL_DOMAIN}`, original, 'someone@elsewhere.example')
    assert.equal(row.state, 'forwarded')
    assert.equal(row.kind, 'operator')
    const [msg] = await h.db.select().from(messages).where(eq(messages.id, row.forwardedMessageId!))
    assert.ok(msg)
    const [rcpt] = await h.db.select().from(messageRecipients).where(eq(messageRecipients.messageId, msg.id))
    assert.equal(rcpt?.address, OPERATOR_INBOX)
    assert.equal(rcpt?.state, 'queued')
    assert.match(msg.returnPath, /^b\+[0-9a-f]{32}\.[0-9a-f]{12}@bounces\.pool\.example$/)
    assert.equal(msg.memberId, null, 'the pool’s own mail: nobody’s volume or reputation')
    const body = msg.body.toString('latin1')
    // Signed as the pool (d= its domain, aligned with From), so the operator's provider sees DMARC pass.
    const verified = await dkimVerify(msg.body, {
      resolver: async (name: string, type: string) => {
        if (type === 'TXT' && name === `${h.poolKey.selector}._domainkey.${POOL_DOMAIN}`) return [[h.poolKey.txt]]
        throw Object.assign(new Error(`no ${type} ${name}`), { code: 'ENOTFOUND' })
      },
    })
    assert.deepEqual(
      verified.results.map((r) => [r.signingDomain, r.status.result]),
      [[POOL_DOMAIN, 'pass']],
    )
    assert.match(body, /^From: Atmosphere Mail fbl-ingest <fbl-ingest@pool\.example>\r$/m)
    assert.match(body, /^Subject: \[fbl-ingest\] Your pool sent me something odd\r$/m)
    assert.match(body, /^Content-Type: message\/rfc822\r$/m)
    assert.ok(body.includes(row.raw.toString('latin1')), 'the original, byte for byte')
    const job = await h.redis.hget(`${h.prefix}:deliver-message:${msg.id}`, 'data')
    assert.deepEqual(JSON.parse(job ?? 'null'), { messageId: msg.id })
  })

  it('a bounce of a forward (the pool’s own mail) is quarantined, never forwarded again, and suppresses nothing', async () => {
    const original = [
      'From: <x@elsewhere.example>',
      `To: postmaster@${POOL_DOMAIN}`,
      'Subject: hi',
      '',
      'Hi.',
      '',
    ].join('\r\n')
    const first = await deliver(`postmaster@${POOL_DOMAIN}`, original, 'x@elsewhere.example')
    const [fwd] = await h.db.select().from(messages).where(eq(messages.id, first.forwardedMessageId!))
    const row = await deliver(
      fwd!.returnPath,
      dsn({
        to: fwd!.returnPath,
        recipient: OPERATOR_INBOX,
        status: '5.1.1',
        diagnostic: '550 5.1.1 <ops@operator.example>: User unknown',
      }),
    )
    assert.equal(row.state, 'quarantined')
    assert.equal(row.forwardedMessageId, null)
    const [q] = await h.db.select().from(quarantinedReports).where(eq(quarantinedReports.inboundId, row.id))
    assert.match(q?.reason ?? '', /the pool's own mail bounced: a forward to ops@operator\.example/)
    assert.deepEqual(await eventsOf(row.id), [])
    const listed = await h.db.select().from(suppressions).where(eq(suppressions.address, OPERATOR_INBOX))
    assert.deepEqual(listed, [])
  })

  it('without a pool DKIM key a forward is not made unsigned: it fails, naming the fix, and waits', async () => {
    const keys = new SigningKeys(h.db.$client, { pool: loadKeyring(h.poolKekFile) })
    await assert.rejects(
      prepareForward(keys, { ...poolIdentity(h), domain: 'unkeyed.example' }, OPERATOR_INBOX, {
        inboundId: 1,
        raw: Buffer.from('Subject: x\r\n\r\nx\r\n'),
        receivedAt: new Date(),
        remoteAddress: null,
        heloName: null,
        mailFrom: '',
        rcptTo: ['postmaster@unkeyed.example'],
        summary: 'operator mail',
      }),
      (err: Error) => err instanceof NoPoolKeyError && /unkeyed\.example.*relay keys init/.test(err.message),
    )
  })

  it('garbage and unattributable reports are quarantined with the reason; auto-replies are ignored', async () => {
    const verp = (await spool(h, await addMember(h.db), 'x@remote.example')).returnPath
    const garbage = await deliver(verp, '\u0000\u0001\u0002garbage')
    assert.equal(garbage.state, 'quarantined')
    const [q1] = await h.db.select().from(quarantinedReports).where(eq(quarantinedReports.inboundId, garbage.id))
    assert.match(q1?.reason ?? '', /unparseable/)

    const orphan = await deliver(
      `fbl@${POOL_DOMAIN}`,
      dsn({
        to: `fbl@${POOL_DOMAIN}`,
        recipient: 'a@remote.example',
        status: '5.1.1',
        diagnostic: '550 5.1.1 unknown',
      }),
    )
    assert.equal(orphan.state, 'quarantined')
    const [q2] = await h.db.select().from(quarantinedReports).where(eq(quarantinedReports.inboundId, orphan.id))
    assert.match(q2?.reason ?? '', /^no attribution/)

    const vacation = await deliver(
      verp,
      [
        'From: Away <x@remote.example>',
        `To: ${verp}`,
        'Subject: Out of office',
        'Auto-Submitted: auto-replied',
        '',
        'I am away until Monday.',
        '',
      ].join('\r\n'),
      'x@remote.example',
    )
    assert.equal(vacation.state, 'processed')
    assert.equal(vacation.kind, 'auto_reply')
    assert.deepEqual(await eventsOf(vacation.id), [])
  })

  it('exposes pool-wide figures and per-stage counters as metrics', async () => {
    const text = await service.ctx.metrics.metrics()
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN)
    assert.ok(value(/^atmos_fbl_quarantined\{[^}]*\} (\d+)$/m) >= 2, 'garbage and the orphan DSN')
    assert.ok(value(/^atmos_fbl_pool_complaint_rate\{window="24h"[^}]*\} ([\d.e-]+)$/m) > 0)
    assert.ok(value(/^atmos_fbl_pool_events\{window="24h",type="hard_bounce"[^}]*\} (\d+)$/m) >= 1)
    assert.ok(value(/^atmos_fbl_processed_total\{kind="dsn",outcome="processed"[^}]*\} (\d+)$/m) >= 3)
    assert.ok(value(/^atmos_fbl_processed_total\{kind="operator",outcome="forwarded"[^}]*\} (\d+)$/m) >= 1)
    assert.ok(value(/^atmos_fbl_smtp_accepted_total\{[^}]*\} (\d+)$/m) >= 10)
  })
})
