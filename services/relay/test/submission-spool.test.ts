import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type { Pool } from '@atmos/db'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { OverCapError, type SpoolRequest, SubmissionSpool } from '../src/submission/spool.ts'
import { seedMember, testPool } from './delivery-helpers.ts'

// The submission spool against the real Postgres: submissions finished at once are
// committed in one statement, and the warming cap holds exactly as if one by one.

let tdb: TestDatabase
let sql: Pool
let spool: SubmissionSpool
const DAY = '2026-11-25'

before(async () => {
  tdb = await createTestDatabase()
  sql = testPool(tdb.url)
  spool = new SubmissionSpool(sql)
})

after(async () => {
  await sql?.end({ timeout: 5 })
  await tdb?.drop()
})

function request(memberId: number, recipients: string[], cap: number): SpoolRequest {
  return {
    memberId,
    envelopeFrom: 'sender@member.example',
    messageIdHeader: `<${randomUUID()}@member.example>`,
    copies: recipients.map((to) => ({
      id: randomUUID(),
      recipient: to,
      domain: to.split('@')[1]!,
      returnPath: `b+${randomUUID().replaceAll('-', '')}@bounces.example`,
      body: Buffer.from(`To: <${to}>\r\n\r\nHello \u00ff\r\n`, 'latin1'),
    })),
    expiresAt: new Date(Date.now() + 3_600_000),
    day: DAY,
    cap,
  }
}

async function volume(memberId: number) {
  const [row] = await sql<{ recipients: number; messages: number }[]>`
    select recipients, messages from send_volume where member_id = ${memberId} and day = ${DAY}::date`
  return row ? { recipients: row.recipients, messages: row.messages } : undefined
}

describe('submission spool, group commit', () => {
  it('commits concurrent submissions of several members together, each copy with its recipient and body', async () => {
    const [a, b, c] = [
      await seedMember(sql, 'a.example'),
      await seedMember(sql, 'b.example'),
      await seedMember(sql, 'c.example'),
    ]
    const reqs = [
      request(a, ['x1@r.test'], 10),
      request(b, ['y1@r.test', 'y2@r.test'], 10),
      request(a, ['x2@r.test'], 10),
      request(c, ['z1@r.test'], 10),
      request(a, ['x3@r.test'], 10),
      request(b, ['y3@r.test'], 10),
    ]
    const results = await Promise.all(reqs.map((r) => spool.spool(r)))
    for (const [i, ids] of results.entries()) {
      assert.deepEqual(
        ids,
        reqs[i]!.copies.map((c) => c.id),
      )
    }
    assert.deepEqual(await volume(a), { recipients: 3, messages: 3 })
    assert.deepEqual(await volume(b), { recipients: 3, messages: 2 })
    assert.deepEqual(await volume(c), { recipients: 1, messages: 1 })
    const copy = reqs[1]!.copies[1]!
    const [row] = await sql<{ member_id: string; address: string; body: Buffer; return_path: string }[]>`
      select m.member_id::text, r.address, m.body, m.return_path
      from messages m join message_recipients r on r.message_id = m.id where m.id = ${copy.id}`
    assert.equal(Number(row?.member_id), b)
    assert.equal(row?.address, 'y2@r.test')
    assert.equal(row?.return_path, copy.returnPath)
    assert.ok(row?.body.equals(copy.body), 'the body byte for byte')
  })

  it('admits exactly as many as fit under the cap when a batch would pass it, and refuses the rest', async () => {
    const d = await seedMember(sql, 'd.example')
    const reqs = Array.from({ length: 7 }, (_, i) => request(d, [`u${i}@r.test`], 3))
    const results = await Promise.allSettled(reqs.map((r) => spool.spool(r)))
    const accepted = results.filter((r) => r.status === 'fulfilled')
    const refused = results.filter((r) => r.status === 'rejected')
    assert.equal(accepted.length, 3)
    assert.equal(refused.length, 4)
    assert.ok(refused.every((r) => r.reason instanceof OverCapError))
    assert.deepEqual(await volume(d), { recipients: 3, messages: 3 })
    const [n] = await sql<{ n: number }[]>`select count(*)::int as n from messages where member_id = ${d}`
    assert.equal(n?.n, 3, 'nothing of a refused submission is spooled')
  })

  it('refuses a lone message with more recipients than the cap leaves, counting nothing', async () => {
    const e = await seedMember(sql, 'e.example')
    const other = await seedMember(sql, 'f.example')
    const results = await Promise.allSettled([
      spool.spool(request(e, ['a@r.test', 'b@r.test'], 1)),
      spool.spool(request(other, ['c@r.test'], 1)),
    ])
    assert.ok(results[0]?.status === 'rejected' && results[0].reason instanceof OverCapError)
    assert.equal(results[1]?.status, 'fulfilled', 'another member in the same batch is unaffected')
    assert.equal(await volume(e), undefined)
  })
})
