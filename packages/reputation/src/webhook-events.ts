import type { MemberStatus } from '@atmos/db'
import { emitEvent } from '@atmos/webhook-events'
import type { FeedbackEventInput } from './events.ts'
import type { Executor } from './executor.ts'
import type { Suppression } from './suppressions.ts'

// What the member's webhooks are told of the feedback, suppressions and status changes
// recorded here, each in the caller's transaction (the webhooks outbox, @atmos/webhook-events).
// Every event's data holds ids and facts the member already sees in the account; never a
// report's body.

/** A bounce (ours at delivery, or a DSN) or a complaint against one of the member's messages. */
export async function emitFeedbackWebhook(db: Executor, eventId: number, e: FeedbackEventInput): Promise<void> {
  if (e.memberId === null || e.type === 'unsubscribe') return
  const common = {
    messageId: e.messageId ?? null,
    recipient: e.recipient ? e.recipient.toLowerCase() : null,
    feedbackEventId: eventId,
    source: e.source,
    at: (e.occurredAt ?? new Date()).toISOString(),
  }
  if (e.type === 'complaint') {
    await emitEvent(db, {
      memberId: e.memberId,
      type: 'message.complained',
      data: { ...common, feedbackType: e.feedbackType ?? null },
    })
    return
  }
  await emitEvent(db, {
    memberId: e.memberId,
    type: 'message.bounced',
    data: {
      ...common,
      permanent: e.type === 'hard_bounce',
      status: e.status ?? null,
      replyCode: e.replyCode ?? null,
      reasonClass: e.reasonClass ?? null,
    },
  })
}

/** A recipient opted out of the member's mail (one-click unsubscribe, an ARF opt-out). */
export async function emitUnsubscribeWebhook(db: Executor, s: Suppression): Promise<void> {
  await emitEvent(db, {
    memberId: s.memberId,
    type: 'recipient.unsubscribed',
    data: { recipient: s.address, domain: s.domain, at: new Date().toISOString() },
  })
}

/** A suspension or reinstatement of the member, or of one of its domains (`domain` set). */
export async function emitStatusWebhook(
  db: Executor,
  c: {
    memberId: number
    did: string
    from: MemberStatus
    to: MemberStatus
    reason: string
    changeId: number
    domain?: string
  },
): Promise<void> {
  const type = c.to === 'suspended' ? 'member.suspended' : c.from === 'suspended' ? 'member.reinstated' : null
  if (!type) return
  await emitEvent(db, {
    memberId: c.memberId,
    type,
    data: {
      did: c.did,
      domain: c.domain ?? null,
      reason: c.reason,
      changeId: c.changeId,
      at: new Date().toISOString(),
    },
  })
}
