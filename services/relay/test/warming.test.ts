import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { countingDay, dailyCapFor } from '@atmos/enrolment'
import type { AddedMember } from '../src/members/store.ts'
import { createMember, type Harness, refusal, rfc822, spooled, startSubmission, submitRaw } from './helpers.ts'

const DAY = 86_400_000
const DEFAULT_TIERS = [
  { fromDay: 0, cap: 50 },
  { fromDay: 3, cap: 200 },
  { fromDay: 7, cap: 1000 },
]

describe('warming tiers', () => {
  it('gives the cap of the tier the member has reached, then the standard cap from day 14', () => {
    const now = new Date('2026-03-20T12:00:00Z')
    const cap = (daysAgo: number | null) =>
      dailyCapFor(daysAgo === null ? null : now.getTime() - daysAgo * DAY - 1000, now, DEFAULT_TIERS, 10_000).cap
    assert.deepEqual([null, 0, 2, 3, 6, 7, 13, 14, 400].map(cap), [50, 50, 50, 200, 200, 1000, 1000, 10_000, 10_000])
  })

  it('counts on the UTC day and resets at the next UTC midnight', () => {
    assert.deepEqual(countingDay(new Date('2026-03-20T23:59:59.999Z')), {
      day: '2026-03-20',
      resetsAt: new Date('2026-03-21T00:00:00Z'),
    })
  })
})

describe('warming caps under parallel submission', () => {
  let h: Harness
  let m: AddedMember

  before(async () => {
    h = await startSubmission({
      ATMOS_RELAY_SUBMISSION_WARMING_TIERS: '0:5,3:200,7:1000',
      ATMOS_RELAY_SUBMISSION_MAX_CONNECTIONS_PER_MEMBER: '50',
      ATMOS_RELAY_SUBMISSION_MAX_CONNECTIONS_PER_ADDRESS: '50',
    })
    m = await createMember(h, 'warm.example')
  })
  after(async () => {
    await h?.close()
  })

  it('20 parallel clients never pass the cap: exactly 5 accepted, the rest 451 4.7.1 with the reset time', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        submitRaw(
          h.port,
          m,
          { from: 'a@warm.example', to: [`r${i}@dest.example`] },
          rfc822({ From: 'a@warm.example', To: `r${i}@dest.example`, Subject: `n${i}` }, 'x\r\n'),
        ),
      ),
    )
    const accepted = results.filter((r) => r.status === 'fulfilled')
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as { response?: string }] : []))
    assert.equal(accepted.length, 5)
    assert.equal(refused.length, 15)
    const { resetsAt } = countingDay(new Date())
    for (const err of refused) {
      assert.equal(
        err.response,
        `451 4.7.1 warm.example reached its limit of 5 recipients today; it resets at ${resetsAt.toISOString()}`,
      )
    }
    const [vol] = await h.sql<{ recipients: number; messages: number }[]>`
      select recipients, messages from send_volume where member_id = ${m.id}`
    assert.deepEqual({ ...vol }, { recipients: 5, messages: 5 })
    assert.equal((await spooled(h.sql)).length, 5)
    assert.equal(h.submission.metrics.refused.value({ reason: 'over_cap' }), 15)
  })

  it('a domain past its tier gets the next cap, counted per day', async () => {
    const older = await createMember(h, 'older.example', { activatedDaysAgo: 4 })
    const day = countingDay(new Date()).day
    await h.sql`
      insert into send_volume (member_id, domain_id, day, recipients, messages)
      values (${older.id}, ${older.domainId}, ${day}, 199, 10)`
    const send = (to: string[]) =>
      submitRaw(h.port, older, { from: 'a@older.example', to }, rfc822({ From: 'a@older.example' }, 'x\r\n'))
    // Two recipients would make 201: the second is refused at RCPT, the first goes.
    const t = await send(['one@dest.example'])
    assert.match(t.response, /^250 /)
    const err = await refusal(send(['two@dest.example']))
    assert.match(err.response ?? '', /^451 4\.7\.1 older\.example reached its limit of 200 recipients today/)
  })
})
