import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { type Db, feedbackEvents, labels, members, messageRecipients, messages, verificationRuns } from '@atmos/db'
import { type SignedLabel, verifyLabel } from '@atmos/labels'
import { memberStatusChanged, TypedQueue, verifyAttestation } from '@atmos/queues'
import { DEFAULT_CLEAN_SENDER } from '@atmos/reputation'
import { goodMailZone } from '@atmos/testkit'
import { and, eq } from 'drizzle-orm'
import { labelerConfigSchema } from '../src/config.ts'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  queryLabels,
  relayMember,
  startLabeler,
} from './helpers.ts'

const DID = 'did:plc:cleansenderzyoun6zhxrhs6'
const DOMAIN = 'clean.member.example'

/** `count` messages of the member, one recipient each, delivered a minute ago. */
async function delivered(db: Db, memberId: number, count: number): Promise<void> {
  const at = new Date(Date.now() - 60_000)
  const ids = Array.from({ length: count }, () => randomUUID())
  await db.insert(messages).values(
    ids.map((id) => ({
      id,
      memberId,
      envelopeFrom: `news@${DOMAIN}`,
      returnPath: 'b+x@bounces.example',
      size: 10,
      body: Buffer.from('x'),
      expiresAt: new Date(Date.now() + 86_400_000),
      receivedAt: at,
    })),
  )
  await db.insert(messageRecipients).values(
    ids.map((messageId, i) => ({
      messageId,
      address: `r${i}@example.net`,
      domain: 'example.net',
      state: 'delivered' as const,
      updatedAt: at,
    })),
  )
}

async function hardBounces(db: Db, memberId: number, count: number): Promise<void> {
  await db.insert(feedbackEvents).values(
    Array.from({ length: count }, (_, i) => ({
      type: 'hard_bounce' as const,
      memberId,
      recipient: `gone${i}-${randomUUID().slice(0, 8)}@example.net`,
      source: 'dsn',
      occurredAt: new Date(Date.now() - 30_000),
    })),
  )
}

describe('labeler: clean-sender follows 30-day figures with hysteresis', () => {
  let h: LabelerHarness
  let memberId: number
  const db = () => h.service.ctx.db

  before(async () => {
    h = await startLabeler(goodMailZone(DOMAIN, DID))
  })
  after(async () => {
    await h?.close()
  })

  const cleanSender = async () => (await queryLabels(h.xrpc, DID)).find((l) => l.val === 'clean-sender')
  const row = async () =>
    (
      await db()
        .select()
        .from(labels)
        .where(and(eq(labels.uri, DID), eq(labels.val, 'clean-sender')))
    )[0]
  const scheduleRuns = async () =>
    (await db().select().from(verificationRuns).where(eq(verificationRuns.did, DID))).filter(
      (r) => r.trigger === 'schedule',
    ).length

  /** What the scheduler's daily sweep does: a verification run, which recomputes the labels. */
  const sweep = async () => {
    const before = await scheduleRuns()
    const queue = new TypedQueue(verifyAttestation, h.service.ctx.redis, h.service.ctx.config.redis.prefix)
    try {
      await queue.enqueue({ did: DID, trigger: 'schedule', requestedAt: new Date().toISOString() })
      await eventually(async () => ((await scheduleRuns()) > before ? true : undefined), 30_000, 'a scheduled run')
    } finally {
      await queue.close()
    }
  }

  it('is issued over enough clean volume, kept between thresholds, negated above, re-issued after recovery', async () => {
    ;({ memberId } = await relayMember(db(), DID, [DOMAIN]))
    h.jetstream.commit(DID, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: DOMAIN,
      cid: 'bafyclean',
      record: attestationRecord(DOMAIN),
    })
    await eventually(async () =>
      (await queryLabels(h.xrpc, DID)).some((l) => l.val === 'relay-member' && !l.neg) ? true : undefined,
    )
    // Clean, but 50 messages are below the minimum volume of 100.
    await delivered(db(), memberId, 50)
    await sweep()
    assert.equal(await cleanSender(), undefined, 'not issued below the minimum volume')

    await delivered(db(), memberId, 150)
    await sweep()
    const issued = await cleanSender()
    assert.ok(issued && !issued.neg, 'issued at 0 % over 200 messages')
    assert.ok(issued.exp, 'a positive label expires unless renewed')
    const sig = Buffer.from(issued.sig.$bytes, 'base64')
    assert.equal(await verifyLabel({ ...(issued as unknown as SignedLabel), sig }, h.didKey), true)
    const issuedRow = (await row())!
    assert.match(issuedRow.reason ?? '', /clean-sender issued: 30 days: 200 messages/)
    assert.match(issuedRow.reason ?? '', /hard-bounce rate 0\.00 % \(0; issue below 2\.0 %, negate at 5\.0 %\)/)

    // 6 of 200 = 3 %: above the issue threshold, below the negate one. No churn.
    await hardBounces(db(), memberId, 6)
    await sweep()
    assert.equal((await row())!.seq, issuedRow.seq, 'kept, and nothing emitted')

    // 12 of 200 = 6 %: negated, the figures recorded.
    await hardBounces(db(), memberId, 6)
    await sweep()
    const negated = await cleanSender()
    assert.equal(negated?.neg, true, 'negated at the negate threshold')
    assert.match(
      (await row())!.reason ?? '',
      /hard-bounce rate reached the negate threshold; 30 days: 200 messages \(min 100\), hard-bounce rate 6\.0 % \(12;/,
    )

    // 12 of 300 = 4 %: below negate but not below issue. Stays negated.
    await delivered(db(), memberId, 100)
    const negatedSeq = (await row())!.seq
    await sweep()
    assert.equal((await row())!.seq, negatedSeq, 'not re-issued between thresholds')

    // 12 of 700 ≈ 1.7 %: recovered, re-issued.
    await delivered(db(), memberId, 400)
    await sweep()
    const reissued = await cleanSender()
    assert.ok(reissued && !reissued.neg, 're-issued after recovery')
    assert.match((await row())!.reason ?? '', /clean-sender issued: 30 days: 700 messages/)
  })

  it('is negated with relay-member when the member is suspended', async () => {
    await db().update(members).set({ status: 'suspended' }).where(eq(members.id, memberId))
    const queue = new TypedQueue(memberStatusChanged, h.service.ctx.redis, h.service.ctx.config.redis.prefix)
    try {
      await queue.enqueue({ did: DID, status: 'suspended', reason: 'operator', changeId: 1 })
      await eventually(
        async () =>
          (await queryLabels(h.xrpc, DID)).filter((l) => l.val !== 'verified-mail-operator').every((l) => l.neg)
            ? true
            : undefined,
        20_000,
        'negation',
      )
    } finally {
      await queue.close()
    }
    assert.equal((await cleanSender())?.neg, true)
    assert.match((await row())!.reason ?? '', /not an active relay member \(member suspended: operator\)/)
  })
})

describe('labeler: clean-sender configuration', () => {
  it("defaults to the reputation package's thresholds and refuses an issue rate not below its negate rate", () => {
    assert.deepEqual(loadConfig(labelerConfigSchema, { env: {} }).labeler.cleanSender, DEFAULT_CLEAN_SENDER)
    const set = loadConfig(labelerConfigSchema, {
      env: { ATMOS_LABELER_CLEAN_SENDER_MIN_VOLUME: '500', ATMOS_LABELER_CLEAN_SENDER_NEGATE_COMPLAINT_RATE: '0.002' },
    }).labeler.cleanSender
    assert.equal(set.minVolume, 500)
    assert.equal(set.negateComplaintRate, 0.002)
    assert.throws(
      () => loadConfig(labelerConfigSchema, { env: { ATMOS_LABELER_CLEAN_SENDER_ISSUE_BOUNCE_RATE: '0.05' } }),
      /issueBounceRate must be below negateBounceRate/,
    )
    assert.throws(
      () => loadConfig(labelerConfigSchema, { env: { ATMOS_LABELER_CLEAN_SENDER_NEGATE_COMPLAINT_RATE: '0.0001' } }),
      /issueComplaintRate must be below negateComplaintRate/,
    )
  })
})
