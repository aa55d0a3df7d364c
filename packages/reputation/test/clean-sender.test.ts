import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  type CleanSenderFigures,
  cleanSenderFigures,
  DEFAULT_CLEAN_SENDER,
  DEFAULT_THRESHOLDS,
  decideCleanSender,
  recordFeedbackEvent,
} from '../src/index.ts'
import { addMember, addOutcomes, type Harness, harness } from './helpers.ts'

const t = DEFAULT_CLEAN_SENDER
const figures = (outcomes: number, bounceRate: number, complaintRate: number): CleanSenderFigures => ({
  since: new Date(0),
  until: new Date(0),
  delivered: outcomes,
  outcomes,
  hardBounces: Math.round(bounceRate * outcomes),
  complaints: Math.round(complaintRate * outcomes),
  bounceRate,
  complaintRate,
})

describe('clean-sender decision', () => {
  it('defaults stay below the suspension thresholds, and issue below negate', () => {
    assert.ok(t.negateBounceRate < DEFAULT_THRESHOLDS.bounceSuspend)
    assert.ok(t.negateComplaintRate < DEFAULT_THRESHOLDS.complaintSuspend)
    assert.ok(t.issueBounceRate < t.negateBounceRate && t.issueComplaintRate < t.negateComplaintRate)
  })

  it('issues only over the minimum volume with both rates below the issue thresholds', () => {
    assert.equal(decideCleanSender(false, true, figures(99, 0, 0), t).held, false)
    assert.equal(decideCleanSender(false, true, figures(100, 0, 0), t).held, true)
    assert.equal(decideCleanSender(false, true, figures(1000, 0.02, 0), t).held, false)
    assert.equal(decideCleanSender(false, true, figures(10000, 0, 0.0005), t).held, false)
    assert.equal(decideCleanSender(false, true, figures(10000, 0.019, 0.0004), t).held, true)
  })

  it('keeps a held label between the thresholds and negates at either negate threshold', () => {
    assert.equal(decideCleanSender(true, true, figures(1000, 0.049, 0.0009), t).held, true)
    // Volume falling under the minimum does not take a held label away: only a bad rate does.
    assert.equal(decideCleanSender(true, true, figures(10, 0, 0), t).held, true)
    const bounce = decideCleanSender(true, true, figures(1000, 0.05, 0), t)
    assert.equal(bounce.held, false)
    assert.match(bounce.reason, /hard-bounce rate reached the negate threshold/)
    const complaint = decideCleanSender(true, true, figures(10000, 0, 0.001), t)
    assert.equal(complaint.held, false)
    assert.match(complaint.reason, /complaint rate reached the negate threshold.*complaint rate 0\.10 % \(10 of 10000/)
    assert.equal(decideCleanSender(true, false, figures(1000, 0, 0), t).held, false)
  })
})

describe('clean-sender figures', () => {
  let h: Harness
  before(async () => {
    h = await harness()
  })
  after(async () => {
    await h?.close()
  })

  it('counts 30 days of outcomes, hard bounces and complaints, not older ones', async () => {
    const m = await addMember(h.db)
    await addOutcomes(h.db, m.id, 40, 'delivered')
    await addOutcomes(h.db, m.id, 10, 'bounced', 29 * 86_400_000)
    await addOutcomes(h.db, m.id, 30, 'delivered', 31 * 86_400_000)
    await recordFeedbackEvent(h.db, { type: 'hard_bounce', memberId: m.id, source: 'dsn', recipient: 'a@example.net' })
    await recordFeedbackEvent(h.db, { type: 'complaint', memberId: m.id, source: 'arf', recipient: 'b@example.net' })
    await recordFeedbackEvent(h.db, {
      type: 'complaint',
      memberId: m.id,
      source: 'arf',
      recipient: 'c@example.net',
      occurredAt: new Date(Date.now() - 31 * 86_400_000),
    })
    const f = await cleanSenderFigures(h.db, m.id)
    assert.equal(f.outcomes, 50)
    assert.equal(f.delivered, 40)
    assert.equal(f.hardBounces, 1)
    assert.equal(f.complaints, 1)
    assert.equal(f.bounceRate, 1 / 50)
    assert.equal(f.complaintRate, 1 / 40)
  })
})
