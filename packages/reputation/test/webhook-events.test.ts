import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { messages } from '@atmos/db'
import { recordFeedbackEventOnce, setDomainStatus, setMemberStatus, suppress } from '../src/index.ts'
import { addMember, harness, type TestMember } from './helpers.ts'

// What the member's webhooks are told of what this package records, in the same
// transaction: complaints and bounces (once, however often a report is replayed),
// unsubscribes, suspension and reinstatement of the member or of one of its domains.

let h: Awaited<ReturnType<typeof harness>>
let m: TestMember

before(async () => {
  h = await harness()
  m = await addMember(h.db)
  // An endpoint wanting everything (its secret is never opened here: no dispatcher runs).
  await h.db.$client`
    insert into webhook_endpoints (member_id, url, events, secret_sealed, kek_id)
    values (${m.id}, 'https://hooks.example.net/x',
            ${['message.bounced', 'message.complained', 'recipient.unsubscribed', 'member.suspended', 'member.reinstated']},
            ${Buffer.alloc(40)}, 'k')`
})
after(async () => {
  await h?.close()
})

async function events(): Promise<Array<{ type: string; payload: Record<string, unknown> }>> {
  return h.db.$client`
    select e.type, e.payload from webhook_events e join webhook_deliveries d on d.event_id = e.id
    where e.member_id = ${m.id} order by e.id`
}

async function message(): Promise<string> {
  const id = randomUUID()
  await h.db.insert(messages).values({
    id,
    memberId: m.id,
    domainId: m.domainId,
    envelopeFrom: `a@${m.domain}`,
    returnPath: 'b+x@bounces.example',
    size: 1,
    body: Buffer.from('x'),
    expiresAt: new Date(Date.now() + 3_600_000),
  })
  return id
}

describe('webhook events from reputation', () => {
  it('a complaint and a bounce, each once however often the report is replayed', async () => {
    const before = (await events()).length
    const msg = await message()
    for (let i = 0; i < 2; i++) {
      await recordFeedbackEventOnce(h.db, {
        type: 'complaint',
        memberId: m.id,
        messageId: msg,
        recipient: 'Reader@Dest.example',
        feedbackType: 'abuse',
        source: 'arf',
      })
      await recordFeedbackEventOnce(h.db, {
        type: 'hard_bounce',
        memberId: m.id,
        messageId: msg,
        recipient: 'gone@dest.example',
        status: '5.1.1',
        replyCode: 550,
        reasonClass: 'userunknown',
        source: 'dsn',
      })
    }
    const got = (await events()).slice(before)
    assert.deepEqual(
      got.map((e) => [e.type, e.payload.recipient, e.payload.messageId]),
      [
        ['message.complained', 'reader@dest.example', msg],
        ['message.bounced', 'gone@dest.example', msg],
      ],
    )
    assert.equal(got[0]!.payload.feedbackType, 'abuse')
    assert.equal(got[1]!.payload.permanent, true)
    assert.equal(got[1]!.payload.status, '5.1.1')
  })

  it('an unsubscribe', async () => {
    const before = (await events()).length
    await suppress(h.db, { memberId: m.id, address: 'Quit@Dest.example', reason: 'unsubscribe', domainId: m.domainId })
    const [e] = (await events()).slice(before)
    assert.equal(e?.type, 'recipient.unsubscribed')
    assert.equal(e?.payload.recipient, 'quit@dest.example')
    assert.equal(e?.payload.domain, m.domain)
  })

  it('suspension and reinstatement of the member and of a domain; a repeat sends nothing', async () => {
    const before = (await events()).length
    await setMemberStatus(h.db, h.queue, m.did, 'suspended', 'complaint rate 0.4 %', 'fbl-ingest')
    await setMemberStatus(h.db, h.queue, m.did, 'suspended', 'again', 'fbl-ingest')
    await setMemberStatus(h.db, h.queue, m.did, 'active', 'reviewed', 'operator:test')
    await setDomainStatus(h.db, h.queue, m.domain, 'suspended', 'spike', 'operator:test')
    const got = (await events()).slice(before)
    assert.deepEqual(
      got.map((e) => [e.type, e.payload.reason, e.payload.domain]),
      [
        ['member.suspended', 'complaint rate 0.4 %', null],
        ['member.reinstated', 'reviewed', null],
        ['member.suspended', 'spike', m.domain],
      ],
    )
  })
})
