import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { labels, verificationRuns } from '@atmos/db'
import { goodMailZone, type JetstreamServer, type TestDnsServer } from '@atmos/testkit'
import { eq } from 'drizzle-orm'
import type { LabelerService } from '../src/service.ts'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  queryLabels,
  startLabeler,
} from './helpers.ts'

const DID = 'did:plc:grace7nxzyoun6zhxrhs64oiz'
const GRACE_MS = 1500

let h: LabelerHarness
let dns: TestDnsServer
let jetstream: JetstreamServer
let service: LabelerService

before(async () => {
  h = await startLabeler(goodMailZone('grace.example', DID), { ATMOS_LABELER_VERIFY_GRACE_PERIOD: `${GRACE_MS}ms` })
  ;({ dns, jetstream, service } = h)
})
after(async () => {
  await h?.close()
})

async function runs(): Promise<string[]> {
  const rows = await service.ctx.db
    .select()
    .from(verificationRuns)
    .where(eq(verificationRuns.did, DID))
    .orderBy(verificationRuns.id)
  return rows.map((r) => r.outcome)
}

/** Asks for a re-verification (as an identity event does) and waits for its run. */
async function reverify(): Promise<string> {
  const before = (await runs()).length
  jetstream.identity(DID, 'grace.test')
  const all = await eventually(async () => {
    const r = await runs()
    return r.length > before ? r : undefined
  })
  return all.at(-1)!
}

it('temporary DNS errors never negate within the grace period; past it the labels go; recovery re-issues them', async () => {
  const xrpc = service.xrpcUrl!
  jetstream.commit(DID, {
    operation: 'create',
    collection: ATTESTATION,
    rkey: 'grace.example',
    cid: 'bafyg1',
    record: attestationRecord('grace.example'),
  })
  await eventually(async () => ((await queryLabels(xrpc, DID)).length ? true : undefined))

  dns.behave('_dmarc.grace.example', 'servfail')
  assert.equal(await reverify(), 'temperror')
  assert.equal((await queryLabels(xrpc, DID))[0]?.neg, undefined, 'a temporary error must not negate')

  await sleep(GRACE_MS + 100)
  assert.equal(await reverify(), 'temperror')
  const negated = await queryLabels(xrpc, DID)
  assert.equal(negated[0]?.neg, true, 'past the grace period the label is negated')
  const [row] = await service.ctx.db.select().from(labels).where(eq(labels.uri, DID))
  assert.match(row?.reason ?? '', /No check could be completed since .* \(grace period 0 h\)/)

  dns.behave('_dmarc.grace.example', undefined)
  assert.equal(await reverify(), 'pass')
  assert.equal((await queryLabels(xrpc, DID))[0]?.neg, undefined, 'recovery re-issues the label')
})
