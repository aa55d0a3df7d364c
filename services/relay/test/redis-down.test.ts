import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { closedPort } from '@atmos/testkit'
import type { AddedMember } from '../src/members/store.ts'
import { createMember, type Harness, rfc822, spooled, startSubmission, submitRaw } from './helpers.ts'

describe('submission while Redis is down', () => {
  let h: Harness
  let m: AddedMember

  before(async () => {
    h = await startSubmission({ ATMOS_REDIS_URL: `redis://127.0.0.1:${await closedPort()}/0` })
    m = await createMember(h, 'nored.example')
  })
  after(async () => {
    await h?.close()
  })

  it('still answers 250 once the message is spooled: the delivery reconciler enqueues it later', async () => {
    const info = await submitRaw(
      h.port,
      m,
      { from: 'a@nored.example', to: ['x@dest.example'] },
      rfc822({ From: 'a@nored.example', To: 'x@dest.example' }, 'x\r\n'),
    )
    assert.match(info.response, /^250 2\.0\.0 Ok: queued as /)
    const rows = await spooled(h.sql)
    assert.equal(rows.length, 1)
    assert.ok(info.response.includes(rows[0]!.id))
  })
})
