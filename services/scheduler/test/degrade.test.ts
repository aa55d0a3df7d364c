import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import { verificationRuns } from '@atmos/db'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  LabelSubscriber,
  queryLabels,
  startLabeler,
} from '@atmos/labeler/test-harness'
import { createLogger } from '@atmos/runtime'
import { goodMailZone, ManualClock, TEST_REDIS_URL } from '@atmos/testkit'
import { and, eq } from 'drizzle-orm'
import { Registry } from 'prom-client'
import { Sweeper } from '../src/sweep.ts'

// The scheduler and the labeler together, over weeks of a controllable clock: the sweep
// enqueues, the labeler's verify worker checks DNS on loopback and decides the labels.

const DID = 'did:plc:degrade7youn6zhxrhs64oiz'
const DOMAIN = 'degrade.example'
const HOUR = 3_600_000
const DAY = 24 * HOUR
// Defaults: interval 24 h, grace 72 h, so a label lives 2 × 24 + 72 = 120 h.
const TTL = 120 * HOUR

const clock = new ManualClock(Date.UTC(2026, 10, 2, 9, 0, 0))
let h: LabelerHarness
let sweeper: Sweeper
let sub: LabelSubscriber

before(async () => {
  h = await startLabeler(goodMailZone(DOMAIN, DID), {}, { clock })
  sweeper = new Sweeper({
    db: h.service.ctx.db,
    logger: createLogger('test', 'silent'),
    registry: new Registry(),
    redisUrl: TEST_REDIS_URL,
    prefix: h.service.ctx.config.redis.prefix,
    intervalMs: DAY,
    rate: 1000,
    clock,
  })
})
after(async () => {
  sub?.close()
  await sweeper?.stop()
  await h?.close()
})

async function scheduledRuns(): Promise<string[]> {
  const rows = await h.service.ctx.db
    .select({ outcome: verificationRuns.outcome })
    .from(verificationRuns)
    .where(and(eq(verificationRuns.did, DID), eq(verificationRuns.trigger, 'schedule')))
    .orderBy(verificationRuns.id)
  return rows.map((r) => r.outcome)
}

/** Moves the clock on and lets that interval's sweep run; returns the verification's outcome. */
async function passTime(ms: number): Promise<string> {
  clock.advance(ms)
  const before = (await scheduledRuns()).length
  const now = clock.now().getTime()
  const { enqueued } = await sweeper.enqueueInterval(Math.floor(now / DAY) * DAY, DAY)
  assert.equal(enqueued, 1)
  const runs = await eventually(async () => {
    const r = await scheduledRuns()
    return r.length > before ? r : undefined
  })
  assert.equal(runs.length, before + 1, 'one verification per interval')
  return runs.at(-1)!
}

async function current() {
  const labels = await queryLabels(h.xrpc, DID)
  assert.equal(labels.length, 1, 'one label row per value (no relay membership here)')
  return labels[0]!
}

/**
 * The label once queryLabels shows it changed from `previous`: the verification commits the
 * label, and the API's page cache drops the page when it hears of it (LISTEN/NOTIFY), a moment later.
 */
async function changedFrom(previous: { cts: string }) {
  return eventually(async () => {
    const label = await current()
    return label.cts !== previous.cts ? label : undefined
  })
}

async function renewedCount(): Promise<number> {
  const metric = await h.service.ctx.metrics.getSingleMetric('atmos_labeler_labels_renewed_total')?.get()
  return metric?.values.reduce((n, v) => n + v.value, 0) ?? 0
}

it('labels expire unless renewed, and follow DNS as it degrades and recovers over weeks', async () => {
  const t0 = clock.now().getTime()
  sub = new LabelSubscriber(h.xrpc, 0)
  await sub.opened()
  h.jetstream.commit(DID, {
    operation: 'create',
    collection: ATTESTATION,
    rkey: DOMAIN,
    cid: 'bafydeg1',
    record: attestationRecord(DOMAIN),
  })
  const issued = await eventually(async () => (await queryLabels(h.xrpc, DID))[0])
  assert.equal(issued.neg, undefined)
  assert.equal(issued.exp, new Date(t0 + TTL).toISOString(), 'exp = 2 × interval + grace')

  // Daily re-verification passes; the label lapses in 96 h, more than an interval away: no churn.
  assert.equal(await passTime(DAY), 'pass')
  assert.deepEqual(await current(), issued)
  // Three days and an hour on, it would lapse within one interval: renewed with a fresh exp.
  assert.equal(await passTime(3 * DAY + HOUR), 'pass')
  const renewed = await changedFrom(issued)
  assert.equal(renewed.neg, undefined)
  assert.equal(renewed.exp, new Date(clock.now().getTime() + TTL).toISOString())
  assert.ok(renewed.cts > issued.cts)
  assert.equal(await renewedCount(), 1)

  // The operator weakens DMARC to p=none: a permanent failure negates at once.
  h.dns.set(`_dmarc.${DOMAIN}`, { TXT: [`v=DMARC1; p=none; rua=mailto:dmarc@${DOMAIN}`] })
  assert.equal(await passTime(DAY), 'fail')
  const negated = await changedFrom(renewed)
  assert.equal(negated.neg, true, 'negation visible in queryLabels')
  await eventually(async () => (sub.labels().some((l) => l.label.neg === true) ? true : undefined))

  // Fixed again: the next interval re-issues.
  h.dns.set(`_dmarc.${DOMAIN}`, { TXT: [`v=DMARC1; p=reject; rua=mailto:dmarc@${DOMAIN}`] })
  assert.equal(await passTime(DAY), 'pass')
  const reissued = await changedFrom(negated)
  assert.equal(reissued.neg, undefined)

  // DNS answers SERVFAIL: for a day, two days, 49 hours it negates nothing ...
  h.dns.behave(`_dmarc.${DOMAIN}`, 'servfail')
  assert.equal(await passTime(DAY), 'temperror')
  assert.deepEqual(await current(), reissued, 'a temporary error never negates')
  assert.equal(await passTime(DAY), 'temperror')
  assert.equal(await passTime(DAY + HOUR), 'temperror')
  assert.deepEqual(await current(), reissued, 'nor does it within the grace period')
  // ... but 73 h after the first SERVFAIL the domain counts as lost.
  assert.equal(await passTime(DAY), 'temperror')
  const lost = await changedFrom(reissued)
  assert.equal(lost.neg, true, 'past the grace period the label is negated')

  // The zone recovers: re-issued with a full lifetime.
  h.dns.behave(`_dmarc.${DOMAIN}`, undefined)
  assert.equal(await passTime(DAY), 'pass')
  const back = await changedFrom(lost)
  assert.equal(back.neg, undefined)
  assert.equal(back.exp, new Date(clock.now().getTime() + TTL).toISOString())

  // Every change reached subscribers in order: issue, renew, negate, issue, negate, issue.
  await eventually(async () => (sub.labels().length >= 6 ? true : undefined))
  assert.deepEqual(
    sub.labels().map((l) => (l.label.neg ? 'neg' : 'pos')),
    ['pos', 'pos', 'neg', 'pos', 'neg', 'pos'],
  )
})
