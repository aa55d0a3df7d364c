import type { Pool } from '@atmos/db'
import { Batcher } from '@atmos/runtime'

export type Suppression = {
  reason: 'hard_bounce' | 'complaint' | string
  /** The UTC day it began (YYYY-MM-DD), for the refusal's text. */
  since: string
}

type Ask = { memberId: number; address: string }

/**
 * A recipient on the member's suppression list (current: not removed, not expired), asked
 * at every RCPT. Concurrent sessions' lookups share one query (Batcher).
 */
export class SuppressionLookup {
  private readonly sql: Pool
  private readonly batch = new Batcher((asks: Ask[]) => this.findMany(asks))

  constructor(sql: Pool) {
    this.sql = sql
  }

  /** `address` as the recipient gave it; suppressions are kept lower-case. */
  find(memberId: number, address: string): Promise<Suppression | undefined> {
    return this.batch.call({ memberId, address: address.toLowerCase() })
  }

  private async findMany(asks: Ask[]): Promise<Array<Suppression | undefined>> {
    const rows = await this.sql<(Suppression & { i: number })[]>`
      select distinct on (a.i) a.i, s.reason, to_char(s.created_at at time zone 'UTC', 'YYYY-MM-DD') as since
      from unnest(${asks.map((a) => a.memberId)}::bigint[], ${asks.map((a) => a.address)}::text[])
        with ordinality as a(member_id, address, i)
      join suppressions s on s.member_id = a.member_id and s.address = a.address
      where s.removed_at is null and (s.expires_at is null or s.expires_at > now())
      order by a.i, s.created_at`
    const byIndex = new Map(rows.map(({ i, ...s }) => [Number(i), s]))
    return asks.map((_, i) => byIndex.get(i + 1))
  }
}
