import { type Db, domains } from '@atmos/db'
import { and, inArray, isNull } from 'drizzle-orm'
import type { DmarcRecord, DmarcReport } from './parse.ts'

// Whose report it is. A report is about the domain whose DMARC record the receiver applied
// (policy_published), and each row about one From domain. The report goes to the enrolled
// domain that is the policy domain or above it (else the one most rows' From falls under),
// and only rows whose From falls under that same enrolled domain are kept: a report about
// example.com must not show one member the mail of another who enrolled sub.example.com.

export type ReportAttribution =
  | { attributed: false; reason: string }
  | {
      attributed: true
      memberId: number
      domainId: number
      domain: string
      rows: DmarcRecord[]
      /** Rows about other domains, counted and dropped. */
      elsewhere: number
    }

type Enrolled = { id: number; memberId: number; domain: string }

/** How many distinct From domains of one report are looked at (a report is about one domain). */
const MAX_NAMES = 200

export async function attributeReport(db: Db, report: DmarcReport): Promise<ReportAttribution> {
  const policy = report.policy_published.domain
  const froms = [...new Set(report.record.map((r) => r.identifiers.header_from))]
  const names = [policy, ...froms.filter((f) => f !== policy).slice(0, MAX_NAMES)]
  const suffixes = [...new Set(names.flatMap(suffixesOf))]
  const live: Enrolled[] = await db
    .select({ id: domains.id, memberId: domains.memberId, domain: domains.domain })
    .from(domains)
    .where(and(inArray(domains.domain, suffixes), isNull(domains.removedAt)))
  const byName = new Map(live.map((d) => [d.domain, d]))
  const enrolledFor = (name: string) => {
    for (const s of suffixesOf(name)) {
      const d = byName.get(s)
      if (d) return d
    }
    return undefined
  }
  let chosen = enrolledFor(policy)
  if (!chosen) {
    // The policy domain is above every enrolled one (the organisational record applied to a
    // member's subdomain): the enrolled domain most rows are about.
    const votes = new Map<number, { d: Enrolled; n: number }>()
    for (const r of report.record) {
      const d = enrolledFor(r.identifiers.header_from)
      if (d) votes.set(d.id, { d, n: (votes.get(d.id)?.n ?? 0) + 1 })
    }
    chosen = [...votes.values()].sort((a, b) => b.n - a.n)[0]?.d
  }
  if (!chosen) return { attributed: false, reason: `${policy} is no enrolled domain` }
  const rows = report.record.filter((r) => enrolledFor(r.identifiers.header_from)?.id === chosen.id)
  return {
    attributed: true,
    memberId: chosen.memberId,
    domainId: chosen.id,
    domain: chosen.domain,
    rows,
    elsewhere: report.record.length - rows.length,
  }
}

/** `a.b.example.com` → itself, `b.example.com`, `example.com`, `com` (longest first). */
function suffixesOf(name: string): string[] {
  const labels = name.split('.')
  return labels.map((_, i) => labels.slice(i).join('.'))
}
