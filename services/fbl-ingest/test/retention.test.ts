import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { feedbackEvents, inboundMessages, quarantinedReports } from '@atmos/db'
import { eq, inArray } from 'drizzle-orm'
import { purgeRawInbound } from '../src/process/reconciler.ts'
import { addMember, type Harness, harness, startService, waitFor } from './helpers.ts'

// Reports quote recipients' mail: the raw bytes go after fblIngest.rawRetention, the record stays.

const DAY = 86_400_000

let h: Harness

before(async () => {
  h = await harness('fbl-retention')
})
after(async () => {
  await h?.close()
})

async function stored(state: 'received' | 'processed' | 'quarantined' | 'forwarded', ageMs: number): Promise<number> {
  const raw = Buffer.from(`Subject: ${state}\r\n\r\nquoted mail\r\n`)
  const [row] = await h.db
    .insert(inboundMessages)
    .values({
      receivedAt: new Date(Date.now() - ageMs),
      mailFrom: '',
      rcptTo: ['fbl@pool.example'],
      size: raw.length,
      raw,
      state,
      kind: 'dsn',
    })
    .returning({ id: inboundMessages.id })
  return row!.id
}

async function rows(ids: number[]) {
  const found = await h.db.select().from(inboundMessages).where(inArray(inboundMessages.id, ids))
  return new Map(found.map((r) => [r.id, r]))
}

describe('raw inbound retention', () => {
  it('the worker empties raw mail past 30 days, keeps its row, events and quarantine entry, and keeps younger mail', async () => {
    const member = await addMember(h.db)
    const old = await stored('processed', 31 * DAY)
    const oldQuarantined = await stored('quarantined', 40 * DAY)
    const young = await stored('forwarded', 29 * DAY)
    await h.db
      .insert(feedbackEvents)
      .values({ type: 'hard_bounce', memberId: member.id, inboundId: old, source: 'dsn' })
    await h.db.insert(quarantinedReports).values({ inboundId: oldQuarantined, reason: 'no attribution' })

    const service = await startService({ ...h.env, ATMOS_FBL_INGEST_ROLES: 'worker' })
    try {
      await waitFor('old raw purged', async () => {
        const r = await rows([old, oldQuarantined])
        return [...r.values()].every((x) => x.rawPurgedAt) || undefined
      })
    } finally {
      await service.destroy()
    }
    const r = await rows([old, oldQuarantined, young])
    for (const id of [old, oldQuarantined]) {
      assert.equal(r.get(id)!.raw.length, 0)
      assert.ok(r.get(id)!.size > 0, 'the size it had stays')
    }
    assert.equal(r.get(old)!.state, 'processed')
    assert.equal(r.get(young)!.rawPurgedAt, null)
    assert.ok(r.get(young)!.raw.length > 0)
    assert.equal((await h.db.select().from(feedbackEvents).where(eq(feedbackEvents.inboundId, old))).length, 1)
    assert.equal(
      (await h.db.select().from(quarantinedReports).where(eq(quarantinedReports.inboundId, oldQuarantined))).length,
      1,
    )
  })

  it('purges in batches, each pass bounded, a purged row is not purged again, and unprocessed mail keeps its bytes', async () => {
    await purgeRawInbound(h.db, 0) // what earlier tests left
    // No worker runs here: this one stays 'received', however old.
    const waiting = await stored('received', 60 * DAY)
    const ids = await Promise.all(Array.from({ length: 5 }, () => stored('processed', 3 * DAY)))
    assert.equal(await purgeRawInbound(h.db, DAY, 2, 1), 2)
    assert.equal(await purgeRawInbound(h.db, DAY, 2, 10), 3)
    assert.equal(await purgeRawInbound(h.db, DAY, 2, 10), 0)
    const r = await rows(ids)
    assert.ok([...r.values()].every((x) => x.rawPurgedAt && x.raw.length === 0))
    const [kept] = (await rows([waiting])).values()
    assert.equal(kept!.rawPurgedAt, null, 'mail still to be processed keeps its bytes')
    assert.ok(kept!.raw.length > 0)
  })
})
