import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import { verificationRuns, verificationStatus } from '@atmos/db'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  startLabeler,
} from '@atmos/labeler/test-harness'
import { createLogger } from '@atmos/runtime'
import { goodMailZone, TEST_REDIS_URL } from '@atmos/testkit'
import { and, eq } from 'drizzle-orm'
import { Registry } from 'prom-client'
import { Sweeper } from '../src/sweep.ts'

// A DID attests each of its domains under its own record key: the sweep verifies every
// one of them each interval, not one per DID.

const DID = 'did:plc:twodomains7oun6zhxrhs64o'
const DOMAINS = ['first.example', 'second.example'] as const
const DAY = 24 * 3_600_000

let h: LabelerHarness
let sweeper: Sweeper

before(async () => {
  h = await startLabeler({ ...goodMailZone(DOMAINS[0], DID), ...goodMailZone(DOMAINS[1], DID) })
  sweeper = new Sweeper({
    db: h.service.ctx.db,
    logger: createLogger('test', 'silent'),
    registry: new Registry(),
    redisUrl: TEST_REDIS_URL,
    prefix: h.service.ctx.config.redis.prefix,
    intervalMs: DAY,
    rate: 1000,
  })
})
after(async () => {
  await sweeper?.stop()
  await h?.close()
})

const scheduledRuns = () =>
  h.service.ctx.db
    .select({ domain: verificationRuns.domain, outcome: verificationRuns.outcome })
    .from(verificationRuns)
    .where(and(eq(verificationRuns.did, DID), eq(verificationRuns.trigger, 'schedule')))

it('both attestations of one DID are enqueued and verified in every interval', async () => {
  for (const domain of DOMAINS) {
    h.jetstream.commit(DID, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: domain,
      cid: `bafy${domain.split('.')[0]}`,
      record: attestationRecord(domain),
    })
  }
  await eventually(async () => {
    const rows = await h.service.ctx.db.select().from(verificationStatus).where(eq(verificationStatus.did, DID))
    return rows.filter((r) => r.holds).length === 2 ? true : undefined
  })

  const start = Math.floor(Date.now() / DAY) * DAY
  for (const [n, intervalStart] of [start, start + DAY].entries()) {
    const { enqueued } = await sweeper.enqueueInterval(intervalStart, DAY)
    assert.equal(enqueued, 2, 'one job per attestation')
    const runs = await eventually(async () => {
      const r = await scheduledRuns()
      return r.length === 2 * (n + 1) ? r : undefined
    })
    for (const domain of DOMAINS) {
      assert.equal(
        runs.filter((r) => r.domain === domain && r.outcome === 'pass').length,
        n + 1,
        `${domain} verified in interval ${n + 1}`,
      )
    }
  }
})
