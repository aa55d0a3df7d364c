import type { MemberStatus, Pool } from '@atmos/db'
import { Batcher } from '@atmos/runtime'

/** One domain the member holds in the relay now (not removed), as MAIL FROM judges it. */
export type DomainStanding = {
  id: number
  domain: string
  status: MemberStatus
  statusReason: string | null
  /** Start of this domain's warming, milliseconds since the epoch. */
  activatedAt: number | null
  /** verification_status(did, domain).holds: the member's attestation for it verifies now. */
  holds: boolean
  /** Recipients counted against this domain's cap on the day asked about so far. */
  sentToday: number
}

export type Standing = {
  did: string
  status: MemberStatus
  statusReason: string | null
  /** Holds a current (not negated, not expired) verified-mail-operator label. */
  verified: boolean
  /** Its live domains, longest name first (so that the first one an address is at is the closest). */
  domains: DomainStanding[]
}

export const VERIFIED_LABEL = 'verified-mail-operator'

type Ask = { memberId: number; day: string }

type DomainRow = Omit<DomainStanding, 'id'> & { id: number | string }

/**
 * Whether a member may send now and as which domains, read fresh for every message: a
 * suspension, a domain's lost attestation or a lost label takes effect on the next MAIL
 * FROM, also on a connection opened before it. Labels are read as the labeler stores them
 * (one row per src, uri, val in its latest state; the account-level label's uri is the DID;
 * `exp` is the signed ISO string). relay-member is not required: it is what the labeler
 * derives from this state. Each domain's day count comes with it, for the early over-cap
 * refusal; the spool's conditional count is what enforces the cap. Concurrent sessions'
 * reads share one query (Batcher).
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
    const rows = await sql<(Omit<Standing, 'domains'> & { i: number; domains: DomainRow[] })[]>`
      select a.i, m.did, m.status, m.status_reason as "statusReason",
        exists (
          select 1 from labels l
          where l.uri = m.did and l.val = ${VERIFIED_LABEL} and not l.neg
            and (l.exp is null or l.exp::timestamptz > now())
            ${labelerDid ? sql`and l.src = ${labelerDid}` : sql``}
        ) as verified,
        coalesce((
          select json_agg(json_build_object(
                   'id', d.id, 'domain', d.domain, 'status', d.status, 'statusReason', d.status_reason,
                   'activatedAt', (extract(epoch from d.activated_at) * 1000)::float8,
                   'holds', coalesce(vs.holds, false), 'sentToday', coalesce(v.recipients, 0))
                 order by length(d.domain) desc, d.domain)
          from domains d
          left join verification_status vs on vs.did = m.did and vs.domain = d.domain
          left join send_volume v on v.domain_id = d.id and v.day = a.day
          where d.member_id = m.id and d.removed_at is null
        ), '[]'::json) as domains
      from unnest(${asks.map((a) => a.memberId)}::bigint[], ${asks.map((a) => a.day)}::text[]::date[])
        with ordinality as a(member_id, day, i)
      join members m on m.id = a.member_id`
    const byIndex = new Map(
      rows.map(({ i, domains, ...standing }) => [
        Number(i),
        { ...standing, domains: domains.map((d) => ({ ...d, id: Number(d.id) })) },
      ]),
    )
    return asks.map((_, i) => byIndex.get(i + 1) ?? null)
  }
}
