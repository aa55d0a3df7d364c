import type { Pool } from '@atmos/db'

/** A transaction on the raw pool (what `pool.begin` hands its callback). */
export type Tx = Parameters<Parameters<Pool['begin']>[1]>[0]

/** A bounce attributed to a member and recipient, from our own delivery or from a DSN. */
export type BounceEvent = {
  type: 'hard_bounce' | 'soft_bounce'
  memberId: number
  messageId: string | null
  recipient: string
  /** Enhanced status (5.1.1) and reply code (550) where known. */
  status?: string | undefined
  replyCode?: number | undefined
  /** userunknown, hostunknown, expired … (classifyReply's vocabulary). */
  reasonClass: string
  /** delivery (our own attempt), dsn, plain_bounce. */
  source: string
  inboundId?: number | undefined
  details?: Record<string, unknown> | undefined
}

export type RecordedBounce = { eventId: number; suppressed: boolean }

/**
 * Records a bounce as a feedback event and, for a hard bounce, puts the address on the
 * member's suppression list for `suppressForMs` (the relay then refuses it at RCPT). An
 * address already suppressed keeps the longer of the two terms; a complaint's
 * suppression, which never expires, stays as it is. Runs inside the caller's transaction,
 * so the event and the state change that caused it commit together.
 */
export async function recordBounce(
  tx: Tx,
  event: BounceEvent,
  opts: { suppressForMs: number },
): Promise<RecordedBounce> {
  // As text cast in SQL: drizzle's wrapping of the pool leaves JSON serialisation to the caller.
  const details = event.details ? JSON.stringify(event.details) : null
  const [row] = await tx<{ id: string }[]>`
    insert into feedback_events
      (type, member_id, message_id, inbound_id, recipient, status, reply_code, reason_class, source, details)
    values
      (${event.type}, ${event.memberId}, ${event.messageId}, ${event.inboundId ?? null}, ${event.recipient.toLowerCase()},
       ${event.status ?? null}, ${event.replyCode ?? null}, ${event.reasonClass}, ${event.source}, ${details}::jsonb)
    returning id::text`
  const eventId = Number(row?.id)
  if (event.type !== 'hard_bounce') return { eventId, suppressed: false }
  await tx`
    insert into suppressions (member_id, address, reason, detail, event_id, expires_at)
    values (${event.memberId}, ${event.recipient.toLowerCase()}, 'hard_bounce',
            ${describe(event)}, ${eventId}, now() + make_interval(secs => ${opts.suppressForMs / 1000}))
    on conflict (member_id, address) where removed_at is null do update set
      expires_at = case when suppressions.expires_at is null then null
                        else greatest(suppressions.expires_at, excluded.expires_at) end,
      detail = case when suppressions.reason = 'hard_bounce' then excluded.detail else suppressions.detail end,
      event_id = case when suppressions.reason = 'hard_bounce' then excluded.event_id else suppressions.event_id end`
  return { eventId, suppressed: true }
}

function describe(event: BounceEvent): string {
  const code = [event.replyCode, event.status].filter(Boolean).join(' ')
  return `${event.reasonClass}${code ? ` (${code})` : ''} via ${event.source}`
}
