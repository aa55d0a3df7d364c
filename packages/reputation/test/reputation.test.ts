import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { feedbackEvents, memberStatusChanges, members, suppressions } from '@atmos/db'
import { createRedis, memberStatusChanged, TypedQueue } from '@atmos/queues'
import { closedPort } from '@atmos/testkit'
import { eq, sql } from 'drizzle-orm'
import {
  activeSuppression,
  computeReputation,
  enforceReputation,
  listSuppressions,
  recordAggregateFeedback,
  recordFeedbackEvent,
  recordFeedbackEventOnce,
  removeSuppression,
  republishStatusChanges,
  setMemberStatus,
  statusJobId,
  suppress,
} from '../src/index.ts'
import { addDomain, addMember, addOutcomes, type Harness, harness } from './helpers.ts'

let h: Harness
before(async () => {
  h = await harness()
})
after(async () => {
  await h?.close()
})

describe('suppressions', () => {
  it('keeps one standing entry per member and address; bounces expire, complaints do not', async () => {
    const m = await addMember(h.db)
    const first = await suppress(h.db, { memberId: m.id, address: 'Dead@Example.NET', reason: 'hard_bounce' })
    assert.equal(first.address, 'dead@example.net')
    assert.ok(first.expiresAt)
    const days = (first.expiresAt.getTime() - Date.now()) / 86_400_000
    assert.ok(days > 29.9 && days <= 30, `default bounce term is 30 days, got ${days}`)

    const shorter = await suppress(h.db, {
      memberId: m.id,
      address: 'dead@example.net',
      reason: 'hard_bounce',
      bounceForMs: 3_600_000,
    })
    assert.equal(shorter.id, first.id, 'the same standing entry')
    assert.equal(shorter.expiresAt?.getTime(), first.expiresAt.getTime(), 'a shorter term never shortens it')

    const complaint = await suppress(h.db, { memberId: m.id, address: 'dead@example.net', reason: 'complaint' })
    assert.equal(complaint.id, first.id)
    assert.equal(complaint.reason, 'complaint')
    assert.equal(complaint.expiresAt, null, 'a complaint never expires')

    const again = await suppress(h.db, { memberId: m.id, address: 'dead@example.net', reason: 'hard_bounce' })
    assert.equal(again.reason, 'complaint', 'a later bounce does not weaken a complaint')
    assert.equal(again.expiresAt, null)

    const other = await addMember(h.db)
    assert.equal(await activeSuppression(h.db, other.id, 'dead@example.net'), null, 'lists are per member')
  })

  it('an expired bounce entry gets a new term; a removed entry lets a new one stand', async () => {
    const m = await addMember(h.db)
    const s = await suppress(h.db, { memberId: m.id, address: 'x@example.net', reason: 'hard_bounce', bounceForMs: 1 })
    await h.db.execute(sql`update suppressions set expires_at = now() - interval '1 minute' where id = ${s.id}`)
    assert.equal(await activeSuppression(h.db, m.id, 'x@example.net'), null)
    const renewed = await suppress(h.db, { memberId: m.id, address: 'x@example.net', reason: 'hard_bounce' })
    assert.ok(renewed.expiresAt && renewed.expiresAt.getTime() > Date.now() + 29 * 86_400_000)
    assert.ok(await activeSuppression(h.db, m.id, 'x@example.net'))

    assert.equal(await removeSuppression(h.db, { memberId: m.id, address: 'X@example.net', by: 'member:test' }), true)
    assert.equal(await removeSuppression(h.db, { memberId: m.id, address: 'x@example.net', by: 'member:test' }), false)
    assert.equal(await activeSuppression(h.db, m.id, 'x@example.net'), null)
    const [removed] = await h.db.select().from(suppressions).where(eq(suppressions.id, s.id))
    assert.equal(removed?.removedBy, 'member:test')
    const fresh = await suppress(h.db, { memberId: m.id, address: 'x@example.net', reason: 'complaint' })
    assert.notEqual(fresh.id, s.id)
    assert.deepEqual(
      (await listSuppressions(h.db, { memberId: m.id })).map((e) => [e.address, e.reason]),
      [['x@example.net', 'complaint']],
    )
  })
  it('records which of the member’s domains led to an entry: as given, else the event’s message’s; one list over all its domains', async () => {
    const m = await addMember(h.db)
    const second = await addDomain(h.db, m.id, `two-${m.domain}`)
    const stranger = await addMember(h.db)

    const given = await suppress(h.db, {
      memberId: m.id,
      address: 'given@example.net',
      reason: 'hard_bounce',
      domainId: second.id,
    })
    assert.deepEqual([given.domainId, given.domain], [second.id, second.domain])

    // The relay's and fbl-ingest's bounces name the event; its message says which domain sent it.
    const [sent] = await addOutcomes(h.db, m.id, 1, 'bounced', 60_000, second.id)
    const eventId = await recordFeedbackEvent(h.db, {
      type: 'hard_bounce',
      memberId: m.id,
      messageId: sent!.messageId,
      recipient: sent!.address,
      source: 'delivery',
    })
    const fromEvent = await suppress(h.db, { memberId: m.id, address: sent!.address, reason: 'hard_bounce', eventId })
    assert.deepEqual([fromEvent.domainId, fromEvent.domain], [second.id, second.domain])

    // Another member's domain is never recorded on this member's entry.
    const foreign = await suppress(h.db, {
      memberId: m.id,
      address: 'foreign@example.net',
      reason: 'complaint',
      domainId: stranger.domainId,
    })
    assert.equal(foreign.domainId, null)

    // A stronger entry takes the domain of its own mail; a weaker one changes nothing.
    const complaint = await suppress(h.db, {
      memberId: m.id,
      address: 'given@example.net',
      reason: 'complaint',
      domainId: m.domainId,
    })
    assert.equal(complaint.domainId, m.domainId)
    const weaker = await suppress(h.db, {
      memberId: m.id,
      address: 'given@example.net',
      reason: 'hard_bounce',
      domainId: second.id,
    })
    assert.equal(weaker.domainId, m.domainId)
    const unknown = await suppress(h.db, { memberId: m.id, address: 'given@example.net', reason: 'manual' })
    assert.equal(unknown.domainId, m.domainId, 'an entry that does not know keeps the domain it had')

    // The list is the member's: the address is suppressed whichever domain sends next.
    assert.equal((await activeSuppression(h.db, m.id, 'given@example.net'))?.domain, m.domain)
    assert.deepEqual(
      (await listSuppressions(h.db, { memberId: m.id })).map((e) => [e.address, e.domain]),
      [
        ['given@example.net', m.domain],
        [sent!.address, second.domain],
        ['foreign@example.net', null],
      ],
    )
  })
})

describe('one message, one vote', () => {
  it('records one event a message, recipient and type: a repeat is not recorded and names the standing event', async () => {
    const m = await addMember(h.db)
    const messageId = randomUUID()
    const event = { type: 'complaint' as const, memberId: m.id, messageId, recipient: 'r@example.net', source: 'arf' }
    const first = await recordFeedbackEventOnce(h.db, event)
    const again = await recordFeedbackEventOnce(h.db, event)
    assert.equal(first.recorded, true)
    assert.deepEqual(again, { id: first.id, recorded: false })
    assert.equal(await recordFeedbackEvent(h.db, event), first.id)
    const bounce = await recordFeedbackEventOnce(h.db, { ...event, type: 'hard_bounce', source: 'dsn' })
    assert.equal(bounce.recorded, true, 'another type of the same message is its own vote')
    // The relay's own bounces of a message spooled to several recipients: one each.
    const other = await recordFeedbackEventOnce(h.db, { ...event, type: 'hard_bounce', recipient: 'R2@example.net' })
    assert.equal(other.recorded, true, 'another recipient of the same message is its own vote')
    assert.deepEqual(
      await recordFeedbackEventOnce(h.db, { ...event, type: 'hard_bounce', recipient: 'r2@example.net' }),
      {
        id: other.id,
        recorded: false,
      },
    )
    // Events without a message (the relay's own, unsigned reports) are not de-duplicated here.
    const loose = { type: 'complaint' as const, memberId: m.id, source: 'arf' }
    assert.equal((await recordFeedbackEventOnce(h.db, loose)).recorded, true)
    assert.equal((await recordFeedbackEventOnce(h.db, loose)).recorded, true)
    const rows = await h.db.select().from(feedbackEvents).where(eq(feedbackEvents.memberId, m.id))
    assert.equal(rows.length, 5)
  })

  it('complaints marked not counted (no configured provider) and unsubscribes never count', async () => {
    const m = await addMember(h.db)
    await addOutcomes(h.db, m.id, 100, 'delivered', 3_600_000)
    await recordFeedbackEvent(h.db, { type: 'complaint', memberId: m.id, source: 'arf', details: { counted: false } })
    await recordFeedbackEvent(h.db, { type: 'unsubscribe', memberId: m.id, source: 'arf' })
    await recordFeedbackEvent(h.db, {
      type: 'complaint',
      memberId: m.id,
      source: 'arf',
      details: { reporter: 'yahoo' },
    })
    const rep = await computeReputation(h.db, m.id, { thresholds: { minVolume: 1 } })
    assert.equal(rep.windows['24h'].complaints, 1)
  })

  it('an unsubscribe entry never weakens a complaint or manual one; it strengthens a bounce entry', async () => {
    const m = await addMember(h.db)
    await suppress(h.db, { memberId: m.id, address: 'c@example.net', reason: 'complaint' })
    const kept = await suppress(h.db, { memberId: m.id, address: 'c@example.net', reason: 'unsubscribe' })
    assert.equal(kept.reason, 'complaint', 'a member may lift an unsubscribe, never a complaint')
    await suppress(h.db, { memberId: m.id, address: 'b@example.net', reason: 'hard_bounce' })
    const stronger = await suppress(h.db, { memberId: m.id, address: 'b@example.net', reason: 'unsubscribe' })
    assert.equal(stronger.reason, 'unsubscribe')
    assert.equal(stronger.expiresAt, null, 'an unsubscribe does not expire')
    const bounced = await suppress(h.db, { memberId: m.id, address: 'b@example.net', reason: 'hard_bounce' })
    assert.equal(bounced.reason, 'unsubscribe')
  })
})

describe('reputation', () => {
  it('counts complaints against deliveries and hard bounces against final outcomes, per window', async () => {
    const m = await addMember(h.db)
    await addOutcomes(h.db, m.id, 150, 'delivered', 3_600_000)
    await addOutcomes(h.db, m.id, 850, 'delivered', 3 * 86_400_000)
    await addOutcomes(h.db, m.id, 10, 'bounced', 3_600_000)
    await addOutcomes(h.db, m.id, 5, 'queued', 3_600_000)
    for (let i = 0; i < 2; i++) await recordFeedbackEvent(h.db, { type: 'complaint', memberId: m.id, source: 'arf' })
    for (let i = 0; i < 4; i++) await recordFeedbackEvent(h.db, { type: 'hard_bounce', memberId: m.id, source: 'dsn' })
    await recordFeedbackEvent(h.db, { type: 'soft_bounce', memberId: m.id, source: 'dsn' })
    await recordFeedbackEvent(h.db, {
      type: 'complaint',
      memberId: m.id,
      source: 'arf',
      occurredAt: new Date(Date.now() - 5 * 86_400_000),
    })
    await recordFeedbackEvent(h.db, {
      type: 'complaint',
      memberId: m.id,
      source: 'arf',
      occurredAt: new Date(Date.now() - 9 * 86_400_000),
    })

    const rep = await computeReputation(h.db, m.id, { thresholds: { minVolume: 100 } })
    const day = rep.windows['24h']
    assert.equal(day.delivered, 150)
    assert.equal(day.refused, 10)
    assert.equal(day.complaints, 2)
    assert.equal(day.hardBounces, 4)
    assert.equal(day.softBounces, 1)
    assert.equal(day.complaintRate, 2 / 150)
    assert.equal(day.bounceRate, 4 / 160)
    assert.equal(day.counted, true)
    assert.equal(day.level, 'suspend', '1.3 % complaints')
    const week = rep.windows['7d']
    assert.equal(week.delivered, 1000)
    assert.equal(week.complaints, 3, 'the 9-day-old complaint is outside')
    assert.equal(week.complaintRate, 3 / 1000)
    assert.equal(week.level, 'suspend', '0.3 % reaches the suspend threshold')
    assert.equal(rep.level, 'suspend')
    assert.match(rep.reasons.join('\n'), /complaint rate 1\.3 % over 24h \(2 complaints, 150 delivered\)/)
  })

  it('counts an event recorded in the same millisecond as the check (Postgres keeps microseconds)', async () => {
    const m = await addMember(h.db)
    const at = new Date(Date.now() - 1000)
    await addOutcomes(h.db, m.id, 10, 'delivered', 60_000)
    const id = await recordFeedbackEvent(h.db, { type: 'complaint', memberId: m.id, source: 'arf' })
    // 700 µs into the millisecond the check is made at: what a fast check right after the insert sees.
    await h.db.execute(
      sql`update feedback_events set occurred_at = ${at.toISOString()}::timestamptz + interval '700 microseconds' where id = ${id}`,
    )
    const rep = await computeReputation(h.db, m.id, { now: at })
    assert.equal(rep.windows['24h'].complaints, 1)
  })

  it('decides nothing below the minimum volume, and warns between the thresholds', async () => {
    const small = await addMember(h.db)
    await addOutcomes(h.db, small.id, 20, 'delivered')
    await recordFeedbackEvent(h.db, { type: 'complaint', memberId: small.id, source: 'arf' })
    const rep = await computeReputation(h.db, small.id)
    assert.equal(rep.windows['24h'].complaintRate, 0.05)
    assert.equal(rep.windows['24h'].counted, false)
    assert.equal(rep.level, 'ok')

    const warned = await addMember(h.db)
    await addOutcomes(h.db, warned.id, 1000, 'delivered')
    await recordFeedbackEvent(h.db, { type: 'complaint', memberId: warned.id, source: 'arf' })
    for (let i = 0; i < 60; i++) {
      await recordFeedbackEvent(h.db, { type: 'hard_bounce', memberId: warned.id, source: 'dsn' })
    }
    const w = await computeReputation(h.db, warned.id)
    assert.equal(w.level, 'warn')
    assert.equal(w.windows['24h'].complaintRate, 0.001)
    assert.match(w.reasons.join('\n'), /hard-bounce rate 6\.0 % over 24h \(60 of 1000\) reached the warn threshold/)
  })

  it('counts an aggregate Gmail rate: with a volume as complaints, without one as a rate', async () => {
    const m = await addMember(h.db)
    await addOutcomes(h.db, m.id, 2000, 'delivered')
    const now = Date.now()
    await recordAggregateFeedback(h.db, {
      memberId: m.id,
      provider: 'gmail',
      periodStart: new Date(now - 86_400_000),
      periodEnd: new Date(now),
      complaintRate: 0.002,
      volume: 1000,
      recordedBy: 'operator:test',
    })
    let rep = await computeReputation(h.db, m.id)
    assert.equal(rep.windows['24h'].aggregateComplaints, 2)
    assert.equal(rep.windows['24h'].complaintRate, 2 / 2000)
    assert.equal(rep.level, 'warn')

    // The same period again corrects the figure instead of adding a second one.
    await recordAggregateFeedback(h.db, {
      memberId: m.id,
      provider: 'gmail',
      periodStart: new Date(now - 86_400_000),
      periodEnd: new Date(now),
      complaintRate: 0.004,
      recordedBy: 'operator:test',
    })
    rep = await computeReputation(h.db, m.id)
    assert.equal(rep.windows['24h'].aggregateRate, 0.004)
    assert.equal(rep.windows['24h'].complaintRate, 0.004)
    assert.equal(rep.level, 'suspend')
    await assert.rejects(
      recordAggregateFeedback(h.db, {
        memberId: m.id,
        provider: 'gmail',
        periodStart: new Date(now),
        periodEnd: new Date(now - 1),
        complaintRate: 0.5,
        recordedBy: 'x',
      }),
      /period must end after it starts/,
    )
    await assert.rejects(
      recordAggregateFeedback(h.db, {
        memberId: m.id,
        provider: 'gmail',
        periodStart: new Date(now - 1000),
        periodEnd: new Date(now),
        complaintRate: 2,
        recordedBy: 'x',
      }),
      /between 0 and 1/,
    )
  })

  it('pool figures take every member together', async () => {
    const rep = await computeReputation(h.db, null)
    const [row] = await h.db.execute<{ n: string }>(
      sql`select count(*) as n from feedback_events where type = 'complaint' and occurred_at > now() - interval '1 day'
          and coalesce((details->>'counted')::boolean, true)`,
    )
    assert.equal(rep.windows['24h'].complaints, Number(row!.n))
    const [d] = await h.db.execute<{ n: string }>(
      sql`select count(*) as n from message_recipients where state = 'delivered' and updated_at > now() - interval '1 day'`,
    )
    assert.equal(rep.windows['24h'].delivered, Number(d!.n))
    assert.ok(rep.windows['24h'].delivered >= 3170)
  })
})

describe('member status', () => {
  it('suspends past a threshold with the reason, records the change and enqueues memberStatusChanged', async () => {
    const m = await addMember(h.db)
    await addOutcomes(h.db, m.id, 500, 'delivered')
    await recordFeedbackEvent(h.db, { type: 'complaint', memberId: m.id, source: 'arf' })
    let result = await enforceReputation(h.db, h.queue, m.id)
    assert.equal(result.reputation.level, 'warn', '1 in 500 is 0.2 %')
    assert.equal(result.suspension, undefined)

    await recordFeedbackEvent(h.db, { type: 'complaint', memberId: m.id, source: 'arf' })
    result = await enforceReputation(h.db, h.queue, m.id)
    assert.equal(result.reputation.level, 'suspend')
    const s = result.suspension!
    assert.equal(s.changed, true)
    assert.equal(s.enqueued, true)
    const [member] = await h.db.select().from(members).where(eq(members.id, m.id))
    assert.equal(member?.status, 'suspended')
    assert.match(member?.statusReason ?? '', /complaint rate 0\.40 % over 24h .* suspend threshold of 0\.30 %/)
    assert.ok(member?.suspendedAt)
    const [change] = await h.db.select().from(memberStatusChanges).where(eq(memberStatusChanges.id, s.changeId))
    assert.equal(change?.fromStatus, 'active')
    assert.equal(change?.toStatus, 'suspended')
    assert.equal(change?.actor, 'fbl-ingest')
    const job = await h.queue.queue.getJob(statusJobId(s.changeId))
    assert.deepEqual(job?.data, { did: m.did, status: 'suspended', reason: member?.statusReason, changeId: s.changeId })

    // Already suspended: nothing more happens.
    const again = await enforceReputation(h.db, h.queue, m.id)
    assert.equal(again.suspension, undefined)
    assert.equal(await h.queue.queue.count(), 1)
  })

  it('reinstatement by an operator re-issues through the queue and is a fresh start for the figures', async () => {
    const m = await addMember(h.db, 'suspended')
    await addOutcomes(h.db, m.id, 500, 'delivered')
    for (let i = 0; i < 5; i++) await recordFeedbackEvent(h.db, { type: 'complaint', memberId: m.id, source: 'arf' })
    const before = await h.queue.queue.count()
    const r = await setMemberStatus(h.db, h.queue, m.did, 'active', 'cleaned the list', 'operator:alice')
    assert.equal(r.changed, true)
    assert.equal(r.from, 'suspended')
    const job = await h.queue.queue.getJob(statusJobId(r.changeId))
    assert.equal(job?.data.status, 'active')
    assert.equal(await h.queue.queue.count(), before + 1)
    const same = await setMemberStatus(h.db, h.queue, m.did, 'active', 'again', 'operator:alice')
    assert.equal(same.changed, false)
    assert.equal(same.changeId, r.changeId)
    assert.equal(await h.queue.queue.count(), before + 1, 'no event for a status the member already has')

    const rep = await computeReputation(h.db, m.id)
    assert.equal(rep.windows['24h'].complaints, 0, 'complaints before the reinstatement do not count')
    assert.equal(rep.level, 'ok')
    const [row] = await h.db.select().from(feedbackEvents).where(eq(feedbackEvents.memberId, m.id)).limit(1)
    assert.ok(row, 'the events themselves stay on record')
    await assert.rejects(setMemberStatus(h.db, h.queue, 'did:plc:nobody', 'active', 'x', 'y'), /no member/)
  })

  it('a status event lost to a Redis outage is sent again from the outbox, once', async () => {
    const m = await addMember(h.db, 'active')
    // Redis refuses: the change commits, its event does not go out.
    const down = createRedis(`redis://127.0.0.1:${await closedPort()}`, {
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    })
    down.on('error', () => {})
    const deadQueue = new TypedQueue(memberStatusChanged, down, h.prefix)
    const r = await setMemberStatus(h.db, deadQueue, m.did, 'suspended', 'complaint rate 0.4 %', 'fbl-ingest')
    down.disconnect()
    assert.equal(r.changed, true)
    assert.equal(r.enqueued, false)
    assert.equal(await h.queue.queue.getJob(statusJobId(r.changeId)), undefined)
    const [pending] = await h.db.select().from(memberStatusChanges).where(eq(memberStatusChanges.id, r.changeId))
    assert.equal(pending?.notifiedAt, null)

    assert.equal(await republishStatusChanges(h.db, h.queue, { graceMs: 0 }), 1)
    const job = await h.queue.queue.getJob(statusJobId(r.changeId))
    assert.deepEqual([job?.data.did, job?.data.status], [m.did, 'suspended'])
    const [sent] = await h.db.select().from(memberStatusChanges).where(eq(memberStatusChanges.id, r.changeId))
    assert.ok(sent?.notifiedAt, 'marked sent')
    assert.equal(await republishStatusChanges(h.db, h.queue, { graceMs: 0 }), 0, 'nothing left to send')
  })

  it('an event Redis took and then lost (restarted empty) before the labeler applied it is sent again', async () => {
    const m = await addMember(h.db, 'active')
    const r = await setMemberStatus(h.db, h.queue, m.did, 'suspended', 'complaint rate 0.5 %', 'fbl-ingest')
    assert.equal(r.enqueued, true)
    const job = () => h.queue.queue.getJob(statusJobId(r.changeId))
    const queuedAt = (await job())?.timestamp
    await republishStatusChanges(h.db, h.queue, { graceMs: 0 })
    assert.equal((await job())?.timestamp, queuedAt, 'a job still waiting is left alone')

    // Redis restarted empty: the job is gone, though the change was marked notified.
    await (await job())?.remove()
    await republishStatusChanges(h.db, h.queue, { graceMs: 0 })
    assert.deepEqual([(await job())?.data.did, (await job())?.data.status], [m.did, 'suspended'], 'sent again')

    // The labeler applied it (in the transaction that moved the labels): nothing more to send.
    await h.db.update(memberStatusChanges).set({ appliedAt: new Date() }).where(eq(memberStatusChanges.id, r.changeId))
    await (await job())?.remove()
    await republishStatusChanges(h.db, h.queue, { graceMs: 0 })
    assert.equal(await job(), undefined, 'an applied change is not sent again')
  })
})
