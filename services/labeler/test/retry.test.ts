import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { verificationRuns } from '@atmos/db'
import { goodMailZone } from '@atmos/testkit'
import { eq } from 'drizzle-orm'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  queryLabels,
  startLabeler,
} from './helpers.ts'

const DID = 'did:plc:retry7nxzyoun6zhxrhs64oiz'
const MIN_MS = 200
const MAX_MS = 600

let h: LabelerHarness

before(async () => {
  h = await startLabeler(goodMailZone('retry.example', DID), {
    ATMOS_LABELER_VERIFY_RETRY_MIN: `${MIN_MS}ms`,
    ATMOS_LABELER_VERIFY_RETRY_MAX: `${MAX_MS}ms`,
  })
})
after(async () => {
  await h?.close()
})

async function runs() {
  return h.service.ctx.db
    .select({ outcome: verificationRuns.outcome, trigger: verificationRuns.trigger, at: verificationRuns.startedAt })
    .from(verificationRuns)
    .where(eq(verificationRuns.did, DID))
    .orderBy(verificationRuns.id)
}

it('a temporary error is re-checked on its own with backoff, and the chain ends when DNS recovers', async () => {
  h.jetstream.commit(DID, {
    operation: 'create',
    collection: ATTESTATION,
    rkey: 'retry.example',
    cid: 'bafyretry1',
    record: attestationRecord('retry.example'),
  })
  await eventually(async () => ((await queryLabels(h.xrpc, DID)).length ? true : undefined))

  h.dns.behave('_dmarc.retry.example', 'servfail')
  h.jetstream.identity(DID, 'retry.test') // one re-verification asked for; the rest must follow by themselves
  const failing = await eventually(async () => {
    const r = (await runs()).filter((x) => x.outcome === 'temperror')
    return r.length >= 4 ? r : undefined
  })
  assert.ok(
    failing.slice(1).every((r) => r.trigger === 'schedule'),
    'follow-ups are scheduled retries',
  )
  for (let i = 1; i < failing.length; i++) {
    const gap = failing[i]!.at.getTime() - failing[i - 1]!.at.getTime()
    assert.ok(gap >= MIN_MS - 20, `retry ${i} came ${gap} ms after the previous run, before the backoff`)
  }
  assert.equal((await queryLabels(h.xrpc, DID))[0]?.neg, undefined, 'retries never negate within the grace period')

  h.dns.behave('_dmarc.retry.example', undefined)
  await eventually(async () => ((await runs()).at(-1)?.outcome === 'pass' ? true : undefined))
  const settled = (await runs()).length
  await sleep(3 * MAX_MS)
  assert.equal((await runs()).length, settled, 'no retries after a pass')
})
