import { type FeedbackType, feedbackEvents } from '@atmos/db'
import { and, eq, isNull, sql } from 'drizzle-orm'
import type { Executor } from './executor.ts'
import { emitFeedbackWebhook } from './webhook-events.ts'

export type FeedbackEventInput = {
  type: FeedbackType
  memberId: number | null
  messageId?: string | null | undefined
  inboundId?: number | null | undefined
  recipient?: string | null | undefined
  /** Enhanced status (5.1.1) and reply code (550) where the report gave them. */
  status?: string | null | undefined
  replyCode?: number | null | undefined
  reasonClass?: string | null | undefined
  /** ARF Feedback-Type (abuse, fraud …) for complaints. */
  feedbackType?: string | null | undefined
  /** dsn, arf, plain_bounce, delivery (the relay's own 5xx). */
  source: string
  details?: Record<string, unknown> | undefined
  occurredAt?: Date | undefined
}

/** One complaint or bounce against a member (and message, where known); returns its id. */
export async function recordFeedbackEvent(db: Executor, event: FeedbackEventInput): Promise<number> {
  return (await recordFeedbackEventOnce(db, event)).id
}

/**
 * Records an event unless its message already has one of that type for that recipient:
 * one message, one vote, however often a report is replayed or a DSN repeats the address
 * (the unique index on message, recipient and type decides, so two reports racing record
 * one). `recorded` is false for such a duplicate, whose `id` is the standing event's: the
 * caller acts (suppresses, enforces) only on what it recorded.
 */
export async function recordFeedbackEventOnce(
  db: Executor,
  event: FeedbackEventInput,
): Promise<{ id: number; recorded: boolean }> {
  const [row] = await db
    .insert(feedbackEvents)
    .values({
      type: event.type,
      memberId: event.memberId,
      messageId: event.messageId ?? null,
      inboundId: event.inboundId ?? null,
      recipient: event.recipient ? event.recipient.toLowerCase() : null,
      status: event.status || null,
      replyCode: event.replyCode ?? null,
      reasonClass: event.reasonClass || null,
      feedbackType: event.feedbackType || null,
      source: event.source,
      details: event.details ?? null,
      ...(event.occurredAt ? { occurredAt: event.occurredAt } : {}),
    })
    .onConflictDoNothing({
      target: [feedbackEvents.messageId, feedbackEvents.recipient, feedbackEvents.type],
      where: sql`message_id IS NOT NULL`,
    })
    .returning({ id: feedbackEvents.id })
  if (row) {
    // The member's webhooks hear of it in the same transaction (a replayed report, not recorded, is not re-sent).
    await emitFeedbackWebhook(db, row.id, event)
    return { id: row.id, recorded: true }
  }
  const recipient = event.recipient ? event.recipient.toLowerCase() : null
  const [standing] = await db
    .select({ id: feedbackEvents.id })
    .from(feedbackEvents)
    .where(
      and(
        eq(feedbackEvents.messageId, event.messageId!),
        recipient === null ? isNull(feedbackEvents.recipient) : eq(feedbackEvents.recipient, recipient),
        eq(feedbackEvents.type, event.type),
      ),
    )
  return { id: standing!.id, recorded: false }
}
