import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import { attestations, memberStatusChanges, verificationRuns } from '@atmos/db'
import { memberStatusChanged, TypedQueue, verifyAttestation } from '@atmos/queues'
import { goodMailZone, testRedisPrefix } from '@atmos/testkit'
import { eq } from 'drizzle-orm'
import { verifyJobId } from '../src/verify/requests.ts'
import { eventually, type LabelerHarness, relayMember, startLabeler } from './helpers.ts'

// Verification requests are recorded in Postgres and only carried by Redis: the ingester's
// reconciler must hand back to the queue whatever Redis lost, within its configured interval.

const LOST = { did: 'did:plc:reconcilelost2xyoun6zhxrhs', domain: 'lost.example' }
const STUCK = { did: 'did:plc:reconcilestuck2xyoun6zhxr', domain: 'stuck.example' }

let h: LabelerHarness

before(async () => {
  h = await startLabeler(
    { ...goodMailZone(LOST.domain, LOST.did), ...goodMailZone(STUCK.domain, STUCK.did) },
    { ATMOS_LABELER_INGEST_RECONCILE_INTERVAL: '300ms', ATMOS_REDIS_PREFIX: testRedisPrefix('reconcile') },
  )
})
after(async () => {
  await h?.close()
})

const runsOf = (did: string) => h.service.ctx.db.select().from(verificationRuns).where(eq(verificationRuns.did, did))

/** An attestation whose verification was asked for (committed) and never reached a worker. */
async function recordRequest(a: { did: string; domain: string }, requestedAt: Date) {
  await h.service.ctx.db.insert(attestations).values({
    did: a.did,
    rkey: a.domain,
    domain: a.domain,
    dkimSelectors: ['atmos1'],
    relayMember: true,
    verifyRequestedAt: requestedAt,
    verifyTrigger: 'ingest',
  })
}

it('a request Redis lost (restarted empty) is verified within a few intervals, not after a fixed minute', async () => {
  await recordRequest(LOST, new Date())
  const runs = await eventually(async () => ((await runsOf(LOST.did)).length ? runsOf(LOST.did) : undefined), 10_000)
  assert.equal(runs[0]?.outcome, 'pass')
})

it("a finished job under the request's id does not make the re-enqueue a no-op", async () => {
  const requestedAt = new Date()
  const request = { did: STUCK.did, rkey: STUCK.domain, requestedAt }
  // A job with the request's id that finished without answering it (here: it ran before
  // the row existed; in production, one that spent its retries while Postgres was down).
  const queue = new TypedQueue(verifyAttestation, h.service.ctx.redis, h.service.ctx.config.redis.prefix)
  try {
    await queue.enqueue(
      { did: STUCK.did, rkey: STUCK.domain, trigger: 'ingest', requestedAt: requestedAt.toISOString() },
      { jobId: verifyJobId(request) },
    )
    await eventually(async () => {
      const job = await queue.queue.getJob(verifyJobId(request))
      return job && ((await job.isCompleted()) || (await job.isFailed())) ? true : undefined
    }, 10_000)
  } finally {
    await queue.close()
  }
  await recordRequest(STUCK, requestedAt)
  const runs = await eventually(
    async () => ((await runsOf(STUCK.did)).length ? runsOf(STUCK.did) : undefined),
    10_000,
    'the request verified',
  )
  assert.equal(runs[0]?.outcome, 'pass')
})

it('a member-status event applied is marked applied with its labels, so the outbox stops sending it', async () => {
  const did = 'did:plc:reconcilestatus2xyoun6zhxr'
  const { memberId } = await relayMember(h.service.ctx.db, did, ['status.example'])
  const [change] = await h.service.ctx.db
    .insert(memberStatusChanges)
    .values({ memberId, toStatus: 'suspended', reason: 'test', actor: 'operator:test', notifiedAt: new Date() })
    .returning({ id: memberStatusChanges.id })
  const queue = new TypedQueue(memberStatusChanged, h.service.ctx.redis, h.service.ctx.config.redis.prefix)
  try {
    await queue.enqueue({ did, status: 'suspended', reason: 'test', changeId: change!.id })
  } finally {
    await queue.close()
  }
  const applied = await eventually(async () => {
    const [row] = await h.service.ctx.db
      .select({ appliedAt: memberStatusChanges.appliedAt })
      .from(memberStatusChanges)
      .where(eq(memberStatusChanges.id, change!.id))
    return row?.appliedAt ?? undefined
  }, 10_000)
  assert.ok(applied instanceof Date)
})
