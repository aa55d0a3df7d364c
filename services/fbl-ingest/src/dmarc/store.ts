import { dmarcReportRows, dmarcReports, type Tx } from '@atmos/db'
import type { ReportAttribution } from './attribute.ts'
import type { DmarcRecord, DmarcReport } from './parse.ts'
import type { PoolIpMatcher } from './pool-ips.ts'

export type StoredReport = { stored: true; id: number; rows: number } | { stored: false }

/** Rows a statement: well under Postgres' 65,535 parameters at 12 columns. */
const BATCH = 2000

/**
 * The report and its rows, in the caller's transaction (the one that marks the inbound
 * message processed). A report already held (same org and report id) stores nothing.
 */
export async function insertReport(
  tx: Tx,
  input: {
    inboundId: number
    report: DmarcReport
    attribution: ReportAttribution
    verifiedSender: string | null
    reverse: Map<string, string>
    isPool: PoolIpMatcher
  },
): Promise<StoredReport> {
  const { report, attribution } = input
  const meta = report.report_metadata
  const rows = attribution.attributed ? attribution.rows : []
  const [inserted] = await tx
    .insert(dmarcReports)
    .values({
      inboundId: input.inboundId,
      orgName: meta.org_name,
      reportId: meta.report_id,
      orgEmail: meta.email,
      verifiedSender: input.verifiedSender,
      policyDomain: report.policy_published.domain,
      memberId: attribution.attributed ? attribution.memberId : null,
      domainId: attribution.attributed ? attribution.domainId : null,
      dateBegin: new Date(meta.date_range.begin * 1000),
      dateEnd: new Date(meta.date_range.end * 1000),
      rows: rows.length,
      rowsElsewhere: attribution.attributed ? attribution.elsewhere : report.record.length,
    })
    .onConflictDoNothing()
    .returning({ id: dmarcReports.id })
  if (!inserted) return { stored: false }
  for (let i = 0; i < rows.length; i += BATCH) {
    await tx.insert(dmarcReportRows).values(rows.slice(i, i + BATCH).map((r) => rowValues(inserted.id, r, input)))
  }
  return { stored: true, id: inserted.id, rows: rows.length }
}

function rowValues(reportId: number, r: DmarcRecord, input: { reverse: Map<string, string>; isPool: PoolIpMatcher }) {
  const ip = r.row.source_ip
  return {
    reportId,
    sourceIp: ip,
    reverseName: input.reverse.get(ip) ?? null,
    poolIp: input.isPool(ip),
    count: r.row.count,
    disposition: r.row.policy_evaluated.disposition,
    dkimAligned: r.row.policy_evaluated.dkim,
    spfAligned: r.row.policy_evaluated.spf,
    headerFrom: r.identifiers.header_from,
    envelopeFrom: r.identifiers.envelope_from ?? null,
    dkimAuth: r.auth_results.dkim
      .map((d) => `${d.domain}${d.selector ? `/${d.selector}` : ''}:${d.result}`)
      .join(', ')
      .slice(0, 1000),
    spfAuth: r.auth_results.spf
      .map((s) => `${s.domain ?? '?'}:${s.result}`)
      .join(', ')
      .slice(0, 1000),
  }
}
