import type { MemberStatus, Pool } from '@atmos/db'
import { Batcher } from '@atmos/runtime'

export type Standing = {
  status: MemberStatus
  statusReason: string | null
  /** Milliseconds since the epoch (dates are read as numbers: the drizzle-wrapped pool returns them as strings). */
  activatedAt: number | null
  /** Holds a current (not negated, not expired) verified-mail-operator label. */
  verified: boolean
  /** Recipients counted against the warming cap on the day asked about so far. */
  sentToday: number
}

export const VERIFIED_LABEL = 'verified-mail-operator'

type Ask = { memberId: number; day: string }

/**
 * Whether a member may send now, read fresh for every message: a suspension or a lost
 * label takes effect on the next MAIL FROM, also on a connection opened before it.
 * Labels are read as the labeler stores them (one row per src, uri, val in its latest
 * state; the account-level label's uri is the DID; `exp` is the signed ISO string).
 * relay-member is not required: it is what the labeler derives from this status.
 * The day's count comes with it, for the early over-cap refusal; the spool's conditional
 * count is what enforces the cap. Concurrent sessions' reads share one query (Batcher).
 */
export class StandingReader {
  private readonly sql: Pool
  private readonly labelerDid: string
  private readonly batch = new Batcher((asks: Ask[]) => this.readMany(asks))

  constructor(sql: Pool, labelerDid: string) {
    this.sql = sql
    this.labelerDid = labelerDid
  }

  read(memberId: number, day: string): Promise<Standing | null> {
    return this.batch.call({ memberId, day })
  }

  private async readMany(asks: Ask[]): Promise<Array<Standing | null>> {
    const { sql, labelerDid } = this
    const rows = await sql<(Standing & { i: number })[]>`
      select a.i, m.status, m.status_reason as "statusReason",
        (extract(epoch from m.activated_at) * 1000)::float8 as "activatedAt",
        exists (
          select 1 from labels l
          where l.uri = m.did and l.val = ${VERIFIED_LABEL} and not l.neg
            and (l.exp is null or l.exp::timestamptz > now())
            ${labelerDid ? sql`and l.src = ${labelerDid}` : sql``}
        ) as verified,
        coalesce((select v.recipients from send_volume v where v.member_id = m.id and v.day = a.day), 0)::int
          as "sentToday"
      from unnest(${asks.map((a) => a.memberId)}::bigint[], ${asks.map((a) => a.day)}::text[]::date[])
        with ordinality as a(member_id, day, i)
      join members m on m.id = a.member_id`
    const byIndex = new Map(rows.map(({ i, ...standing }) => [Number(i), standing]))
    return asks.map((_, i) => byIndex.get(i + 1) ?? null)
  }
}
