import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type { Pool } from '@atmos/db'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { OverCapError, type SpoolRequest, SubmissionSpool } from '../src/submission/spool.ts'
import { firstDomainId, seedDomain, seedMember, testPool } from './delivery-helpers.ts'

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

type Sender = { memberId: number; domainId: number }

/** A member and its first domain. */
async function seed(domain: string): Promise<Sender> {
  const memberId = await seedMember(sql, domain)
  return { memberId, domainId: await firstDomainId(sql, memberId) }
}

function request(sender: Sender, recipients: string[], cap: number): SpoolRequest {
  return {
    ...sender,
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

async function volume(sender: Sender) {
  const [row] = await sql<{ recipients: number; messages: number }[]>`
    select recipients, messages from send_volume
    where domain_id = ${sender.domainId} and member_id = ${sender.memberId} and day = ${DAY}::date`
  return row ? { recipients: row.recipients, messages: row.messages } : undefined
}

describe('submission spool, group commit', () => {
  it('commits concurrent submissions of several members together, each copy with its recipient and body', async () => {
    const [a, b, c] = [await seed('a.example'), await seed('b.example'), await seed('c.example')]
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
    assert.equal(Number(row?.member_id), b.memberId)
    assert.equal(row?.address, 'y2@r.test')
    assert.equal(row?.return_path, copy.returnPath)
    assert.ok(row?.body.equals(copy.body), 'the body byte for byte')
  })

  it('admits exactly as many as fit under the cap when a batch would pass it, and refuses the rest', async () => {
    const d = await seed('d.example')
    const reqs = Array.from({ length: 7 }, (_, i) => request(d, [`u${i}@r.test`], 3))
    const results = await Promise.allSettled(reqs.map((r) => spool.spool(r)))
    const accepted = results.filter((r) => r.status === 'fulfilled')
    const refused = results.filter((r) => r.status === 'rejected')
    assert.equal(accepted.length, 3)
    assert.equal(refused.length, 4)
    assert.ok(refused.every((r) => r.reason instanceof OverCapError))
    assert.deepEqual(await volume(d), { recipients: 3, messages: 3 })
    const [n] = await sql<{ n: number }[]>`select count(*)::int as n from messages where member_id = ${d.memberId}`
    assert.equal(n?.n, 3, 'nothing of a refused submission is spooled')
  })

  it('refuses a lone message with more recipients than the cap leaves, counting nothing', async () => {
    const e = await seed('e.example')
    const other = await seed('f.example')
    const results = await Promise.allSettled([
      spool.spool(request(e, ['a@r.test', 'b@r.test'], 1)),
      spool.spool(request(other, ['c@r.test'], 1)),
    ])
    assert.ok(results[0]?.status === 'rejected' && results[0].reason instanceof OverCapError)
    assert.equal(results[1]?.status, 'fulfilled', 'another member in the same batch is unaffected')
    assert.equal(await volume(e), undefined)
  })

  it("counts each of a member's domains against its own cap: one domain at its cap leaves the other's untouched", async () => {
    const g = await seed('g.example')
    const g2: Sender = { memberId: g.memberId, domainId: await seedDomain(sql, g.memberId, 'g2.example') }
    const results = await Promise.allSettled([
      ...Array.from({ length: 3 }, (_, i) => spool.spool(request(g, [`g${i}@r.test`], 2))),
      ...Array.from({ length: 2 }, (_, i) => spool.spool(request(g2, [`h${i}@r.test`], 2))),
    ])
    const ok = results.map((r) => r.status === 'fulfilled')
    assert.equal(ok.slice(0, 3).filter(Boolean).length, 2, 'two of g.example three fit its cap of 2')
    assert.deepEqual(ok.slice(3), [true, true], 'g2.example counts on its own')
    assert.deepEqual(await volume(g), { recipients: 2, messages: 2 })
    assert.deepEqual(await volume(g2), { recipients: 2, messages: 2 })
    const rows = await sql<{ domain_id: string; n: number }[]>`
      select domain_id::text, count(*)::int as n from messages where member_id = ${g.memberId} group by domain_id order by 1`
    assert.deepEqual(
      rows.map((r) => [Number(r.domain_id), r.n]),
      [
        [g.domainId, 2],
        [g2.domainId, 2],
      ],
      'messages.domain_id names the domain each was sent as',
    )
  })
})
