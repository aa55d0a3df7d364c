import { setTimeout as sleep } from 'node:timers/promises'
import { attestations, type Db, labels } from '@atmos/db'
import { TypedQueue, verifyAttestation } from '@atmos/queues'
import { and, gt, inArray, max } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import { attestationJobKey, enqueueAllLive } from './sweep.ts'

/** The outcomes the labeler's verify worker returns, plus what run-once could not see finish. */
const OUTCOMES = ['pass', 'fail', 'temperror', 'skipped', 'unfinished'] as const
type Outcome = (typeof OUTCOMES)[number]

export type RunOnceResult = {
  counts: Record<Outcome, number>
  /** Labels negated and (re-)issued by this run, counted from the label log. */
  negated: number
  issued: number
  /** Attestations (one per domain of a DID) that did not pass, for the operator to look at. */
  notPassed: Array<{ did: string; domain: string | null; outcome: Outcome }>
}

/**
 * Re-verifies every live attestation now, through the same verify jobs the sweep and
 * ingest use (so the checks and the label logic stay in the labeler), and waits for them.
 * Jobs are spread at `rate` per second like a sweep: "now" must not mean a DNS burst.
 */
export async function runOnce(opts: {
  db: Db
  redis: Redis
  prefix: string
  rate: number
  timeoutMs: number
  pollMs?: number
}): Promise<RunOnceResult> {
  const { db } = opts
  const queue = new TypedQueue(verifyAttestation, opts.redis, opts.prefix)
  try {
    const [before] = await db.select({ seq: max(labels.seq) }).from(labels)
    const seqBefore = before?.seq ?? 0
    const startedAt = Date.now()
    const requestedAt = new Date(startedAt).toISOString()
    // One job per attestation: a DID attests each of its domains under its own record key.
    const jobIds = new Map<string, { did: string; rkey: string }>()
    await enqueueAllLive(db, queue, opts.rate, ({ did, rkey }) => {
      const jobId = `manual_${attestationJobKey(did, rkey)}_${startedAt}`
      jobIds.set(jobId, { did, rkey })
      return { payload: { trigger: 'manual', requestedAt }, jobId }
    })

    const outcomes = new Map<string, Outcome>()
    const deadline = startedAt + opts.timeoutMs
    while (outcomes.size < jobIds.size && Date.now() < deadline) {
      for (const jobId of jobIds.keys()) {
        if (outcomes.has(jobId)) continue
        const job = await queue.queue.getJob(jobId)
        // Finished, or failed for good (bullmq keeps retrying a failed job until its attempts run out).
        if (job?.finishedOn && (job.returnvalue || job.attemptsMade >= (job.opts.attempts ?? 1))) {
          const value = (job.returnvalue as { outcome?: string } | null)?.outcome
          outcomes.set(jobId, (OUTCOMES as readonly string[]).includes(value ?? '') ? (value as Outcome) : 'unfinished')
        }
      }
      if (outcomes.size < jobIds.size) await sleep(opts.pollMs ?? 250)
    }

    const counts = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>
    const dids = [...new Set([...jobIds.values()].map((a) => a.did))]
    const notPassedKeys: Array<{ did: string; rkey: string; outcome: Outcome }> = []
    for (const [jobId, attestation] of jobIds) {
      const outcome = outcomes.get(jobId) ?? 'unfinished'
      counts[outcome]++
      if (outcome !== 'pass') notPassedKeys.push({ ...attestation, outcome })
    }
    const changed = dids.length
      ? await db
          .select({ neg: labels.neg })
          .from(labels)
          .where(and(gt(labels.seq, seqBefore), inArray(labels.uri, dids)))
      : []
    const domains = notPassedKeys.length
      ? await db
          .select({ did: attestations.did, rkey: attestations.rkey, domain: attestations.domain })
          .from(attestations)
          .where(
            inArray(
              attestations.did,
              notPassedKeys.map((d) => d.did),
            ),
          )
      : []
    return {
      counts,
      negated: changed.filter((l) => l.neg).length,
      issued: changed.filter((l) => !l.neg).length,
      notPassed: notPassedKeys.map(({ did, rkey, outcome }) => ({
        did,
        outcome,
        domain: domains.find((x) => x.did === did && x.rkey === rkey)?.domain ?? null,
      })),
    }
  } finally {
    await queue.close()
  }
}

/** The summary table `scheduler run-once` prints. */
export function formatSummary(r: RunOnceResult): string {
  const rows: Array<[string, number]> = [
    ['passed', r.counts.pass],
    ['failed', r.counts.fail],
    ['temporary', r.counts.temperror],
    ['skipped', r.counts.skipped],
    ['unfinished', r.counts.unfinished],
    ['labels negated', r.negated],
    ['labels issued', r.issued],
  ]
  const lines = rows.map(([k, v]) => `${k.padEnd(16)}${String(v).padStart(8)}`)
  if (r.notPassed.length) {
    lines.push('', 'not passed:')
    for (const n of r.notPassed) lines.push(`  ${n.outcome.padEnd(11)} ${n.domain ?? '-'}  ${n.did}`)
  }
  return lines.join('\n')
}
