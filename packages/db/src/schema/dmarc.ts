import { sql } from 'drizzle-orm'
import { boolean, index, integer, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core'
import { at, createdAt, id, ref } from './columns.ts'
import { inboundMessages } from './feedback.ts'
import { domains, members } from './members.ts'

/**
 * DMARC aggregate reports (RFC 7489 §7.2) receivers sent to the pool's report mailbox about
 * members' domains. One row a report, kept once per reporting organisation and report id
 * (a resent report is not counted twice). A report about no enrolled domain is recorded
 * (member_id null, no rows) and nothing else: the pool keeps no one else's data.
 */
export const dmarcReports = pgTable(
  'dmarc_reports',
  {
    id: id(),
    inboundId: ref().references(() => inboundMessages.id, { onDelete: 'set null' }),
    /** report_metadata: who reports (as the report says), its id and contact. */
    orgName: text().notNull(),
    reportId: text().notNull(),
    orgEmail: text().notNull(),
    /** The From domain of the report's mail when it passed DMARC at receipt; null: unauthenticated. */
    verifiedSender: text(),
    /** policy_published domain, lower-case. */
    policyDomain: text().notNull(),
    memberId: ref().references(() => members.id, { onDelete: 'cascade' }),
    domainId: ref().references(() => domains.id, { onDelete: 'set null' }),
    dateBegin: at().notNull(),
    dateEnd: at().notNull(),
    /** Rows stored, and rows the report held about other domains (not stored). */
    rows: integer().notNull(),
    rowsElsewhere: integer().notNull().default(0),
    receivedAt: createdAt(),
  },
  (t) => [
    uniqueIndex('dmarc_reports_org_report_key').on(t.orgName, t.reportId),
    index('dmarc_reports_domain_idx').on(t.domainId, t.dateBegin).where(sql`domain_id IS NOT NULL`),
  ],
)

/** One <record> of a report: a source address and what the receiver made of its mail. */
export const dmarcReportRows = pgTable(
  'dmarc_report_rows',
  {
    id: id(),
    reportId: ref()
      .notNull()
      .references(() => dmarcReports.id, { onDelete: 'cascade' }),
    sourceIp: text().notNull(),
    /** PTR of source_ip at processing time (the owner's claim); null when none came in time. */
    reverseName: text(),
    /** In fblIngest.dmarc.poolIps: the pool's own sending. */
    poolIp: boolean().notNull(),
    count: integer().notNull(),
    /** policy_evaluated: none / quarantine / reject, and DKIM and SPF alignment (pass / fail). */
    disposition: text().notNull(),
    dkimAligned: text().notNull(),
    spfAligned: text().notNull(),
    headerFrom: text().notNull(),
    envelopeFrom: text(),
    /** auth_results in short: `example.com/s1:pass`, `mfrom example.com:pass`, comma-separated. */
    dkimAuth: text().notNull().default(''),
    spfAuth: text().notNull().default(''),
  },
  (t) => [index('dmarc_report_rows_report_idx').on(t.reportId)],
)
