import type { Pool, PoolTx } from '@atmos/db'
import { emitEvents } from '@atmos/webhook-events'
import type { AttemptRecord } from './spool.ts'

// The member's webhooks hear of each delivery attempt's outcome (message.delivered,
// message.deferred) in the transaction that records it. Bounces are told where they are
// recorded (@atmos/reputation's feedback events), for ours and for late DSNs alike.

export type AttemptOutcome = {
  messageId: string
  recipient: string
  attempt: number
  state: 'delivered' | 'deferred'
  retryInMs: number | null
  record: AttemptRecord
}

/** Writes the events of the members with an enabled endpoint: one query, and nothing more for the others. */
export async function emitAttemptOutcomes(tx: Pool | PoolTx, outcomes: AttemptOutcome[]): Promise<void> {
  if (!outcomes.length) return
  const ids = [...new Set(outcomes.map((o) => o.messageId))]
  const rows = await tx<Array<{ id: string; member_id: string; message_id_header: string | null }>>`
    select m.id::text, m.member_id::text, m.message_id_header from messages m
    where m.id = any(${ids}::uuid[]) and m.member_id is not null
      and exists (select 1 from webhook_endpoints e where e.member_id = m.member_id and e.disabled_at is null)`
  if (!rows.length) return
  const byId = new Map(rows.map((r) => [r.id, r]))
  const at = new Date().toISOString()
  await emitEvents(
    tx,
    outcomes.flatMap((o) => {
      const m = byId.get(o.messageId)
      if (!m) return []
      return [
        {
          memberId: Number(m.member_id),
          type: o.state === 'delivered' ? ('message.delivered' as const) : ('message.deferred' as const),
          data: {
            messageId: o.messageId,
            messageIdHeader: m.message_id_header,
            recipient: o.recipient,
            attempt: o.attempt,
            mx: o.record.mxHost ?? null,
            replyCode: o.record.replyCode ?? null,
            enhancedStatus: o.record.enhancedStatus ?? null,
            reply: o.record.reply.slice(0, 500),
            ...(o.state === 'deferred' ? { retryInSeconds: Math.round((o.retryInMs ?? 0) / 1000) } : {}),
            at,
          },
        },
      ]
    }),
  )
}
