import type { deliverMessage, TypedQueue } from '@atmos/queues'

export type DeliveryQueue = TypedQueue<typeof deliverMessage>

/**
 * One job id per recipient and attempt: the retry a worker schedules and the one the
 * reconciler would make for the same attempt are the same job, so Redis holds it once.
 * Finished jobs are removed at once, so that the id is free again if that attempt has to
 * be made over (its worker died).
 */
export function recipientJobId(recipientId: number, attempts: number): string {
  return `r${recipientId}-a${attempts}`
}

export async function enqueueRecipient(
  queue: DeliveryQueue,
  r: { messageId: string; recipientId: number; attempts: number },
  delayMs = 0,
): Promise<void> {
  await queue.enqueue(
    { messageId: r.messageId, recipientIds: [r.recipientId] },
    {
      jobId: recipientJobId(r.recipientId, r.attempts),
      delay: Math.max(0, Math.round(delayMs)),
      removeOnComplete: true,
      removeOnFail: true,
    },
  )
}
