import { type Db, THROTTLE_RECORDED_MODES, THROTTLE_RULES } from '@atmos/db'
import { sql } from 'drizzle-orm'
import { z } from 'zod'

// What the relay's throttle rules decided (throttle_decisions): the spike and spray rules
// that deferred a domain's recipients, or in shadow mode would have, with the figures
// behind each. One row stands for a rule firing on a domain during one record interval
// (the relay writes at most that many), so a long list means many domains or many
// intervals, never many recipients. Shadow rows are how an operator judges the thresholds
// before turning a rule to enforce.

const DID = /^did:(plc|web):[a-zA-Z0-9._:%-]{1,2048}$/

export const throttleDecisionsQuery = z.object({
  /** The member's DID. */
  member: z.string().regex(DID, 'a did:plc or did:web').optional(),
  rule: z.enum(THROTTLE_RULES).optional(),
  mode: z.enum(THROTTLE_RECORDED_MODES).optional(),
  /** Only decisions at or after this instant (ISO 8601). */
  since: z.iso.datetime({ offset: true }).optional(),
  /** Newest first; the next page starts below the last id seen. */
  before: z.coerce.number().int().positive().optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
})

export type ThrottleDecisionsQuery = z.infer<typeof throttleDecisionsQuery>

export type ThrottleDecisionItem = {
  id: number
  at: string
  member: string
  domain: string
  rule: string
  mode: string
  /** `deferred` (enforce: the recipient got 451 4.7.1) or `would_defer` (shadow: accepted). */
  action: string
  /** The rule's evidence: the hour's counts, the history and thresholds it was held to. */
  figures: Record<string, unknown>
}

type Row = {
  id: string
  at: string
  did: string
  domain: string
  rule: string
  mode: string
  action: string
  figures: Record<string, unknown>
}

export async function listThrottleDecisions(db: Db, q: ThrottleDecisionsQuery): Promise<ThrottleDecisionItem[]> {
  // By id (newest first), filtered; throttle_decisions_member_idx serves the member filter.
  const rows = await db.execute<Row>(sql`
    select t.id::text, to_char(t.at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at,
           m.did, t.domain, t.rule, t.mode, t.action, t.figures
    from throttle_decisions t
    join members m on m.id = t.member_id
    where ${q.member ? sql`m.did = ${q.member}` : sql`true`}
      and ${q.rule ? sql`t.rule = ${q.rule}` : sql`true`}
      and ${q.mode ? sql`t.mode = ${q.mode}` : sql`true`}
      and ${q.since ? sql`t.at >= ${q.since}::timestamptz` : sql`true`}
      and ${q.before ? sql`t.id < ${q.before}` : sql`true`}
    order by t.id desc
    limit ${q.limit}`)
  return rows.map((r) => ({
    id: Number(r.id),
    at: r.at,
    member: r.did,
    domain: r.domain,
    rule: r.rule,
    mode: r.mode,
    action: r.action,
    figures: r.figures,
  }))
}
