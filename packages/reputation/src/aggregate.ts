import { aggregateFeedback } from '@atmos/db'
import { sql } from 'drizzle-orm'
import type { Executor } from './executor.ts'

export type AggregateInput = {
  memberId: number
  /** gmail, yahoo … lower-case. */
  provider: string
  periodStart: Date
  periodEnd: Date
  /** Complaints per message, 0–1 (Postmaster Tools shows 0.2 % as 0.002). */
  complaintRate: number
  /** Messages the provider counted, where it says. */
  volume?: number | null | undefined
  recordedBy: string
}

export class AggregateInputError extends Error {
  override name = 'AggregateInputError'
}

/**
 * Records (or corrects) a provider's aggregate complaint figure for one member and
 * period. Gmail sends no per-message complaints, only these rates by Feedback-ID, so an
 * operator enters them and they count in reputation like the reports we receive.
 */
export async function recordAggregateFeedback(db: Executor, input: AggregateInput): Promise<number> {
  const provider = input.provider.trim().toLowerCase()
  if (!/^[a-z0-9-]{1,32}$/.test(provider)) throw new AggregateInputError(`not a provider name: ${input.provider}`)
  if (!(input.complaintRate >= 0 && input.complaintRate <= 1)) {
    throw new AggregateInputError(`complaint rate must be between 0 and 1 (0.002 is 0.2 %), got ${input.complaintRate}`)
  }
  if (Number.isNaN(input.periodStart.getTime()) || Number.isNaN(input.periodEnd.getTime())) {
    throw new AggregateInputError('period start and end must be dates')
  }
  if (input.periodEnd <= input.periodStart) throw new AggregateInputError('period must end after it starts')
  if (input.volume !== undefined && input.volume !== null && !(Number.isInteger(input.volume) && input.volume >= 0)) {
    throw new AggregateInputError(`volume must be a whole number, got ${input.volume}`)
  }
  const [row] = await db
    .insert(aggregateFeedback)
    .values({
      memberId: input.memberId,
      provider,
      periodStart: input.periodStart,
      periodEnd: input.periodEnd,
      complaintRate: input.complaintRate.toFixed(6),
      volume: input.volume ?? null,
      recordedBy: input.recordedBy,
    })
    .onConflictDoUpdate({
      target: [aggregateFeedback.memberId, aggregateFeedback.provider, aggregateFeedback.periodStart],
      set: {
        periodEnd: sql`excluded.period_end`,
        complaintRate: sql`excluded.complaint_rate`,
        volume: sql`excluded.volume`,
        recordedBy: sql`excluded.recorded_by`,
        createdAt: sql`now()`,
      },
    })
    .returning({ id: aggregateFeedback.id })
  return row!.id
}
