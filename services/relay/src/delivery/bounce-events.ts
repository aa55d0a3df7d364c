import type { Tx } from '@atmos/db'
import { recordFeedbackEvent, suppress } from '@atmos/reputation'

/** A bounce from our own delivery, attributed to the member who sent the message. */
export type BounceEvent = {
  type: 'hard_bounce' | 'soft_bounce'
  /** Null for the pool's own mail (fbl-ingest's forwards): recorded, but nobody's list to suppress on. */
  memberId: number | null
  messageId: string | null
  recipient: string
  /** Enhanced status (5.1.1) and reply code (550) where known. */
  status?: string | undefined
  replyCode?: number | undefined
  /** userunknown, hostunknown, expired … (classifyReply's vocabulary). */
  reasonClass: string
  /** delivery: our own attempt. */
  source: string
  details?: Record<string, unknown> | undefined
}

export type RecordedBounce = { eventId: number; suppressed: boolean }

/**
 * Records a bounce as a feedback event and, for a hard bounce, puts the address on the
 * member's suppression list for `suppressForMs` (the relay then refuses it at RCPT), the
 * way fbl-ingest records a DSN: both go through @atmos/reputation. Runs inside the
 * caller's transaction, so the event and the state change that caused it commit together.
 */
export async function recordBounce(
  tx: Tx,
  event: BounceEvent,
  opts: { suppressForMs: number },
): Promise<RecordedBounce> {
  const eventId = await recordFeedbackEvent(tx, { ...event, recipient: event.recipient })
  if (event.type !== 'hard_bounce' || event.memberId === null) return { eventId, suppressed: false }
  await suppress(tx, {
    memberId: event.memberId,
    address: event.recipient,
    reason: 'hard_bounce',
    detail: describe(event),
    eventId,
    bounceForMs: opts.suppressForMs,
  })
  return { eventId, suppressed: true }
}

function describe(event: BounceEvent): string {
  const code = [event.replyCode, event.status].filter(Boolean).join(' ')
  return `${event.reasonClass}${code ? ` (${code})` : ''} via ${event.source}`
}
