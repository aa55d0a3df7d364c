import { createHash } from 'node:crypto'
import type { TypedQueue, verifyAttestation } from '@atmos/queues'
import type { Logger } from '@atmos/runtime'

/**
 * A verification asked for in a transaction (recorded in attestations.verify_requested_at)
 * and handed to the queue after commit; the ingester's reconciler re-enqueues any the queue
 * never took. `release`: the domain's holder let go of it, so this claim is looked at again.
 */
export type VerifyRequest = {
  did: string
  rkey: string
  trigger: 'ingest' | 'identity' | 'release'
  requestedAt: Date
}

/**
 * One attestation's part of a job id: the DID and the record key, made safe for a bullmq id
 * (no ':'), bounded, and told apart by a hash of the key (sanitising alone would make
 * `a-b.example` and `a.b-example` one id).
 */
export function attestationJobKey(did: string, rkey: string): string {
  const safe = (s: string) => s.replace(/[^a-zA-Z0-9]/g, '_')
  const hash = createHash('sha256').update(rkey).digest('hex').slice(0, 12)
  return `${safe(did)}_${safe(rkey).slice(0, 40)}_${hash}`
}

/** A verify job's id: one per request, so a re-enqueue of the same request is a no-op. */
export function verifyJobId(request: { did: string; rkey: string; requestedAt: Date }): string {
  return `verify_${attestationJobKey(request.did, request.rkey)}_${request.requestedAt.getTime()}`
}

/** Hands committed requests to the queue; one that fails is left to the reconciler. */
export async function enqueueRequests(
  queue: TypedQueue<typeof verifyAttestation>,
  requests: VerifyRequest[],
  logger: Logger,
): Promise<void> {
  for (const request of requests) {
    try {
      await queue.enqueue(
        {
          did: request.did,
          rkey: request.rkey,
          trigger: request.trigger,
          requestedAt: request.requestedAt.toISOString(),
        },
        { jobId: verifyJobId(request) },
      )
    } catch (err) {
      // Recorded in Postgres already; the reconciler will enqueue it once Redis is back.
      logger.warn({ err: (err as Error).message, did: request.did }, 'verify request not queued yet')
    }
  }
}
