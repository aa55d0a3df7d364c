import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { feedbackEvents, inboundMessages } from '@atmos/db'
import { deletePrefix } from '@atmos/testkit'
import { eq } from 'drizzle-orm'
import { addMember, type Harness, harness, sendRaw, spool, startService, waitFor } from './helpers.ts'
import { dsn } from './reports.ts'

let h: Harness
before(async () => {
  h = await harness('fbl-durable')
})
after(async () => {
  await h?.close()
})

describe('stored before 250, nothing lost', () => {
  it('a message accepted while no worker runs, with Redis emptied, is processed after the worker starts', async () => {
    const member = await addMember(h.db)
    const sent = await spool(h, member, 'lost@remote.example')
    const listener = await startService({ ...h.env, ATMOS_FBL_INGEST_ROLES: 'smtp' })
    let id: number
    try {
      const reply = await sendRaw(
        listener.ctx.listener!.address!.port,
        '',
        [sent.returnPath],
        dsn({
          to: sent.returnPath,
          recipient: 'lost@remote.example',
          status: '5.1.1',
          diagnostic: '550 5.1.1 no such user',
        }),
      )
      assert.match(reply, /^250 /)
      id = Number(/stored as (\d+)/.exec(reply)?.[1])
    } finally {
      await listener.destroy()
    }
    const [stored] = await h.db.select().from(inboundMessages).where(eq(inboundMessages.id, id))
    assert.equal(stored?.state, 'received', 'the 250 came after the commit')
    // Redis keeps nothing on disk: a restart loses the job, not the message.
    assert.ok((await deletePrefix(h.redis, h.prefix)) > 0)

    const worker = await startService({ ...h.env, ATMOS_FBL_INGEST_ROLES: 'worker' })
    try {
      const row = await waitFor('processed after restart', async () => {
        const [r] = await h.db.select().from(inboundMessages).where(eq(inboundMessages.id, id))
        return r?.state === 'processed' ? r : undefined
      })
      assert.equal(row.kind, 'dsn')
      const events = await h.db.select().from(feedbackEvents).where(eq(feedbackEvents.inboundId, id))
      assert.equal(events.length, 1)
      assert.equal(events[0]?.type, 'hard_bounce')
      // A second job for the same message (a duplicate enqueue) changes nothing.
      const again = await worker.ctx.workers!.processor!.process(id)
      assert.deepEqual(again, { outcome: 'skipped', reason: 'already processed' })
      assert.equal((await h.db.select().from(feedbackEvents).where(eq(feedbackEvents.inboundId, id))).length, 1)
    } finally {
      await worker.destroy()
    }
  })
})
