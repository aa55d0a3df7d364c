import type { Db } from '@atmos/db'
import { sql } from 'drizzle-orm'

// What receivers' DMARC aggregate reports (fbl-ingest stores them) say about one of the
// member's domains: per UTC day of the report's range, who sent as the domain, how much,
// aligned or not, and what the receiver did, the pool's own addresses apart from everyone
// else's. Every query is scoped by the domain row and its member both (the caller checked
// the domain is the signed-in member's), bounded to DMARC_DAYS and a top-N of sources.

/** How far back the page reaches. */
export const DMARC_DAYS = 30
/** Sources listed per group (the pool, everyone else) for one day; the rest are counted. */
export const DMARC_TOP = 100

export type DmarcDay = {
  day: string
  reports: number
  pool: number
  others: number
  /** Messages that failed both aligned DKIM and aligned SPF (DMARC fail), from anyone. */
  failing: number
  /** Of those, from other addresses than the pool's: spoofing or a forgotten sender. */
  othersFailing: number
}

export type DmarcSource = {
  sourceIp: string
  reverseName: string | null
  count: number
  dkim: string
  spf: string
  disposition: string
  headerFrom: string
}

export type DmarcDayDetail = {
  day: string
  pool: { sources: DmarcSource[]; more: number }
  others: { sources: DmarcSource[]; more: number }
  /** Who reported, as each report names itself; `verified` when its mail passed DMARC at receipt. */
  reporters: { org: string; verified: string | null; reports: number }[]
}

const DAY = /^\d{4}-\d{2}-\d{2}$/

/** `YYYY-MM-DD` within the window, or null (the page then shows the newest day). */
export function readDay(value: string | undefined, now = new Date()): string | null {
  if (!value || !DAY.test(value)) return null
  const t = Date.parse(`${value}T00:00:00Z`)
  if (Number.isNaN(t) || new Date(t).toISOString().slice(0, 10) !== value) return null
  const oldest = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - DMARC_DAYS * 86_400_000
  return t >= oldest && t <= now.getTime() ? value : null
}

export async function dmarcDays(db: Db, d: { id: number; memberId: number }): Promise<DmarcDay[]> {
  const rows = await db.execute<{
    day: string
    reports: number
    pool: string
    others: string
    failing: string
    others_failing: string
  }>(sql`
    select to_char(r.date_begin at time zone 'UTC', 'YYYY-MM-DD') as day,
      count(distinct r.id)::int as reports,
      coalesce(sum(x.count) filter (where x.pool_ip), 0)::text as pool,
      coalesce(sum(x.count) filter (where not x.pool_ip), 0)::text as others,
      coalesce(sum(x.count) filter (where x.dkim_aligned <> 'pass' and x.spf_aligned <> 'pass'), 0)::text as failing,
      coalesce(sum(x.count) filter (where not x.pool_ip and x.dkim_aligned <> 'pass' and x.spf_aligned <> 'pass'), 0)::text
        as others_failing
    from dmarc_reports r left join dmarc_report_rows x on x.report_id = r.id
    where r.domain_id = ${d.id} and r.member_id = ${d.memberId}
      and r.date_begin >= date_trunc('day', now() at time zone 'UTC') at time zone 'UTC' - make_interval(days => ${DMARC_DAYS})
    group by 1 order by 1 desc`)
  return rows.map((r) => ({
    day: r.day,
    reports: Number(r.reports),
    pool: Number(r.pool),
    others: Number(r.others),
    failing: Number(r.failing),
    othersFailing: Number(r.others_failing),
  }))
}

export async function dmarcDayDetail(
  db: Db,
  d: { id: number; memberId: number },
  day: string,
): Promise<DmarcDayDetail> {
  // The day's bounds as text the database casts: `day` was checked to be YYYY-MM-DD.
  const from = `${day}T00:00:00Z`
  const scope = sql`r.domain_id = ${d.id} and r.member_id = ${d.memberId}
    and r.date_begin >= ${from}::timestamptz and r.date_begin < ${from}::timestamptz + interval '1 day'`
  const group = async (pool: boolean) => {
    const rows = await db.execute<{
      source_ip: string
      reverse_name: string | null
      n: string
      dkim: string
      spf: string
      disposition: string
      header_from: string
      total: number
    }>(sql`
      select x.source_ip, max(x.reverse_name) as reverse_name, sum(x.count)::text as n, x.dkim_aligned as dkim,
        x.spf_aligned as spf, x.disposition, x.header_from, count(*) over ()::int as total
      from dmarc_reports r join dmarc_report_rows x on x.report_id = r.id
      where ${scope} and x.pool_ip = ${pool}
      group by x.source_ip, x.dkim_aligned, x.spf_aligned, x.disposition, x.header_from
      order by sum(x.count) desc, x.source_ip
      limit ${DMARC_TOP}`)
    const sources = rows.map((r) => ({
      sourceIp: r.source_ip,
      reverseName: r.reverse_name,
      count: Number(r.n),
      dkim: r.dkim,
      spf: r.spf,
      disposition: r.disposition,
      headerFrom: r.header_from,
    }))
    return { sources, more: Math.max(0, Number(rows[0]?.total ?? 0) - sources.length) }
  }
  const [pool, others, reporters] = await Promise.all([
    group(true),
    group(false),
    db.execute<{ org: string; verified: string | null; reports: number }>(sql`
      select r.org_name as org, r.verified_sender as verified, count(*)::int as reports
      from dmarc_reports r where ${scope}
      group by 1, 2 order by 3 desc, 1 limit 50`),
  ])
  return {
    day,
    pool,
    others,
    reporters: reporters.map((r) => ({ org: r.org, verified: r.verified, reports: Number(r.reports) })),
  }
}
