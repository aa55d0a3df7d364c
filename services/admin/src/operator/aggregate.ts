import type { Db } from '@atmos/db'
import { AggregateInputError, computeReputation, recordAggregateFeedback } from '@atmos/reputation'
import { sql } from 'drizzle-orm'
import { z } from 'zod'
import { memberDomains } from '../domains.ts'

// Gmail sends no per-message complaints, only aggregate rates by Feedback-ID in Postmaster
// Tools (and Yahoo and others similar figures): the operator enters them here per member,
// and they count in reputation like the reports fbl-ingest receives. fbl-ingest's
// reconciler enforces the thresholds on them within its interval.

export const aggregateBody = z.object({
  provider: z
    .string()
    .trim()
    .toLowerCase()
    .regex(/^[a-z0-9-]{1,32}$/, 'a provider name such as gmail'),
  periodStart: z.iso.datetime({ offset: true }),
  periodEnd: z.iso.datetime({ offset: true }),
  /** Complaints per message, 0–1: Postmaster Tools' 0.2 % is 0.002. */
  complaintRate: z.number().min(0).max(1),
  volume: z.number().int().min(0).nullable().optional(),
})

export type AggregateBody = z.infer<typeof aggregateBody>

export class UnknownMemberError extends Error {
  override name = 'UnknownMemberError'
}

async function memberId(db: Db, did: string): Promise<number> {
  const rows = await db.execute<{ id: string }>(sql`select id::text from members where did = ${did}`)
  if (!rows[0]) throw new UnknownMemberError(`no member ${did}`)
  return Number(rows[0].id)
}

export async function recordAggregate(db: Db, did: string, body: AggregateBody, recordedBy: string) {
  const id = await memberId(db, did)
  const recorded = await recordAggregateFeedback(db, {
    memberId: id,
    provider: body.provider,
    periodStart: new Date(body.periodStart),
    periodEnd: new Date(body.periodEnd),
    complaintRate: body.complaintRate,
    volume: body.volume ?? null,
    recordedBy,
  })
  const reputation = await computeReputation(db, id)
  return {
    id: recorded,
    member: did,
    // Reputation is the member's, over all its domains.
    domains: await memberDomains(db, id),
    level: reputation.level,
    reasons: reputation.reasons,
  }
}

export async function listAggregates(db: Db, did: string) {
  const id = await memberId(db, did)
  return { member: did, domains: await memberDomains(db, id), items: await aggregatesOf(db, id) }
}

async function aggregatesOf(db: Db, id: number) {
  const rows = await db.execute<{
    id: string
    provider: string
    period_start: string
    period_end: string
    complaint_rate: string
    volume: number | null
    recorded_by: string
  }>(sql`
    select id::text, provider,
           to_char(period_start at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as period_start,
           to_char(period_end at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as period_end,
           complaint_rate::text, volume, recorded_by
    from aggregate_feedback where member_id = ${id} order by period_start desc limit 500`)
  return rows.map((r) => ({
    id: Number(r.id),
    provider: r.provider,
    periodStart: r.period_start,
    periodEnd: r.period_end,
    complaintRate: Number(r.complaint_rate),
    volume: r.volume,
    recordedBy: r.recorded_by,
  }))
}

export { AggregateInputError }
