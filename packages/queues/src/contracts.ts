import { z } from 'zod'
import { defineQueue } from './define.ts'

// Every queue in the system and the exact shape of its jobs. Services import these; none
// declares a queue of its own. Postgres holds the record of everything a job points at,
// so a payload carries ids, never the only copy of data (see each service's reconciler).

const did = z
  .string()
  .regex(/^did:[a-z]+:[a-zA-Z0-9._:%-]+$/, 'expected a DID such as did:plc:abc123')
  .max(2048)

/** Record keys per the atproto spec: 1-512 chars of [A-Za-z0-9._:~-], not "." or "..". */
const rkey = z
  .string()
  .regex(/^[A-Za-z0-9._:~-]{1,512}$/, 'expected an atproto record key')
  .refine((v) => v !== '.' && v !== '..', 'record key may not be "." or ".."')

const backoff = (delay: number) => ({ type: 'exponential' as const, delay })
const keep = { removeOnComplete: { age: 3600, count: 1000 }, removeOnFail: { age: 7 * 86400 } }

/** labeler ingest, scheduler, admin → labeler verify worker. */
export const verifyAttestation = defineQueue({
  name: 'verify-attestation',
  description: 'Run every DNS and identity check for one attestation and update its labels.',
  payload: z
    .object({
      did,
      /** Absent: every live attestation of the DID. */
      rkey: rkey.optional(),
      trigger: z.enum(['ingest', 'schedule', 'manual', 'admin', 'identity', 'release']),
      /** ISO time the verification was asked for; the scheduler's interval bucket. */
      requestedAt: z.iso.datetime(),
    })
    .strict(),
  defaultJobOptions: { attempts: 5, backoff: backoff(30_000), ...keep },
})

/** labeler ingest → label manager: an attestation deleted or an account gone. */
export const revokeLabels = defineQueue({
  name: 'revoke-labels',
  description: 'Negate every label the labeler holds on a DID (record deleted, account deactivated or taken down).',
  payload: z
    .object({
      did,
      reason: z.enum(['attestation_deleted', 'account_deactivated', 'account_taken_down', 'account_deleted']),
      at: z.iso.datetime(),
    })
    .strict(),
  defaultJobOptions: { attempts: 10, backoff: backoff(5_000), ...keep },
})

/** fbl-ingest and operators → labeler: a member's relay status changed. */
export const memberStatusChanged = defineQueue({
  name: 'member-status-changed',
  description: 'A member was suspended or reinstated: the labeler negates or re-issues relay-member.',
  payload: z
    .object({
      did,
      status: z.enum(['pending', 'active', 'suspended']),
      reason: z.string().min(1).max(1000),
      /** The member_status_changes row that recorded it. */
      changeId: z.number().int().positive(),
    })
    .strict(),
  defaultJobOptions: { attempts: 10, backoff: backoff(5_000), ...keep },
})

/** relay submission and reconciler → relay delivery workers. */
export const deliverMessage = defineQueue({
  name: 'deliver-message',
  description:
    'Deliver the queued recipients of one spooled message (or of several, spooled together) to their MX hosts.',
  payload: z
    .object({
      messageId: z.uuid().optional(),
      /** Only these recipient rows of messageId; absent: every recipient still due. */
      recipientIds: z.array(z.number().int().positive()).max(1000).optional(),
      // Instead of messageId, every recipient still due of each of these messages: what one
      // submission group commit spooled goes as one job, so the worker pays bullmq's Redis
      // calls once for the lot instead of once a message (in the relay's profile those calls,
      // more than the deliveries, were the delivery worker's largest cost).
      messageIds: z.array(z.uuid()).min(1).max(1000).optional(),
    })
    .strict()
    .refine((p) => (p.messageId === undefined) !== (p.messageIds === undefined), {
      message: 'exactly one of messageId and messageIds',
    })
    .refine((p) => p.messageIds === undefined || p.recipientIds === undefined, {
      message: 'recipientIds go with messageId only',
    }),
  // Retries are scheduled by the delivery worker from message_recipients, not by bullmq.
  defaultJobOptions: { attempts: 3, backoff: backoff(60_000), ...keep },
})

/** fbl-ingest SMTP → fbl-ingest classifier. */
export const processInbound = defineQueue({
  name: 'process-inbound',
  description: 'Classify one stored inbound message (ARF, DSN, operator mail) and act on it.',
  payload: z.object({ inboundId: z.number().int().positive() }).strict(),
  defaultJobOptions: { attempts: 5, backoff: backoff(10_000), ...keep },
})

/** scheduler's repeatable tick → scheduler sweep worker. */
export const reverifySweep = defineQueue({
  name: 'reverify-sweep',
  description:
    'Enqueue verification of every live attestation for one interval, spread over it. The interval is the bucket of the time the tick was due, so a retried sweep enqueues the same jobs.',
  payload: z
    .object({
      intervalMs: z.number().int().positive(),
    })
    .strict(),
  defaultJobOptions: { attempts: 5, backoff: backoff(30_000), ...keep },
})

export const ALL_QUEUES = [
  verifyAttestation,
  revokeLabels,
  memberStatusChanged,
  deliverMessage,
  processInbound,
  reverifySweep,
] as const
