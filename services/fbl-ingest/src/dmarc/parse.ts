import { isIP } from 'node:net'
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { z } from 'zod'
import { ReportRefused } from './limits.ts'

// RFC 7489 Appendix C, as receivers write it. Strict where the page relies on it (the
// metadata, the policy domain, each row's source, count and evaluated results), lenient
// where reporters differ (auth_results without spf, an empty extra_contact_info).

/** A token such as `pass`, `none`, `quarantine`, `temperror`, lower-cased. */
const token = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[a-z_-]{1,32}$/, 'a result token such as pass or fail')
const text = (max: number) => z.string().trim().min(1).max(max)
const optionalText = (max: number) =>
  z
    .string()
    .trim()
    .max(max)
    .optional()
    .transform((v) => v || undefined)
const domain = z
  .string()
  .trim()
  .toLowerCase()
  .transform((v) => v.replace(/\.$/, ''))
  .refine(isDomainName, 'a domain name')
const epoch = z
  .string()
  .trim()
  .regex(/^\d{1,12}$/, 'seconds since the epoch')
  .transform(Number)
const count = z
  .string()
  .trim()
  .regex(/^\d{1,10}$/, 'a count')
  .transform(Number)
  .pipe(z.number().max(2_147_483_647))
const ip = z
  .string()
  .trim()
  .refine((v) => isIP(v) !== 0, 'an IP address')

const dkimResult = z.object({ domain: domain, selector: optionalText(255), result: token })
const spfResult = z.object({ domain: domain.optional().catch(undefined), scope: optionalText(16), result: token })

const record = z.object({
  row: z.object({
    source_ip: ip,
    count,
    policy_evaluated: z.object({ disposition: token, dkim: token, spf: token }),
  }),
  identifiers: z.object({ header_from: domain, envelope_from: optionalText(255) }),
  auth_results: z
    .object({ dkim: z.array(dkimResult).max(50).default([]), spf: z.array(spfResult).max(50).default([]) })
    .default({ dkim: [], spf: [] }),
})

const feedback = z.object({
  report_metadata: z.object({
    org_name: text(255),
    email: text(320),
    report_id: text(255),
    date_range: z
      .object({ begin: epoch, end: epoch })
      .refine((r) => r.begin <= r.end, 'begin after end')
      // One report covers a day (a week at most in the wild); a year-long range is no report.
      .refine((r) => r.end - r.begin <= 31 * 86_400, 'a range longer than 31 days'),
  }),
  policy_published: z.object({ domain, p: token.optional().catch(undefined) }),
  record: z.array(record).default([]),
})

export type DmarcReport = z.output<typeof feedback>
export type DmarcRecord = DmarcReport['record'][number]

/** Elements that repeat: always arrays, even when a report holds one. */
const REPEATED = new Set(['feedback.record', 'feedback.record.auth_results.dkim', 'feedback.record.auth_results.spf'])

/**
 * The report's XML, validated. No DTD is accepted at all (a DMARC report has none): that
 * shuts out external entities (XXE) and entity expansion (billion laughs) before the parser
 * sees a byte. With no declarations possible, the only entities decoded are XML's five, each
 * one character (an org named `AT&amp;T` reads `AT&T`); character references and undeclared
 * `&name;` stay as written, and HTML entities are not read. The parser's own nesting bound
 * refuses a document nested deeper than any report.
 */
export function parseReport(xml: Buffer, maxRows: number): DmarcReport {
  const source = xml.toString('utf8')
  if (/<!DOCTYPE|<!ENTITY/i.test(source)) throw new ReportRefused('XML with a DTD or entity declarations')
  const valid = XMLValidator.validate(source, { allowBooleanAttributes: true })
  if (valid !== true) {
    throw new ReportRefused(`malformed XML: ${valid.err.msg.slice(0, 200)} (line ${valid.err.line})`)
  }
  // Counted on the text, before a tree is built: a report with a million rows costs a scan, not a parse.
  const rows = countOf(source, '<record>') + countOf(source, '<record ')
  if (rows > maxRows) throw new ReportRefused(`${rows} records (at most ${maxRows})`)
  const parser = new XMLParser({
    ignoreAttributes: true,
    removeNSPrefix: true,
    processEntities: true,
    htmlEntities: false,
    ignoreDeclaration: true,
    ignorePiTags: true,
    parseTagValue: false,
    trimValues: true,
    isArray: (_name, jpath) => REPEATED.has(String(jpath)),
  })
  let tree: unknown
  try {
    tree = parser.parse(source)
  } catch (err) {
    throw new ReportRefused(`malformed XML: ${(err as Error).message.slice(0, 200)}`)
  }
  const root = (tree as { feedback?: { record?: unknown } } | null)?.feedback
  if (root === undefined) throw new ReportRefused('not a DMARC aggregate report: no <feedback> root')
  // Prefixed elements (<ns:record>) escape the count above; the tree has them all.
  const records = typeof root === 'object' && root !== null ? root.record : undefined
  if (Array.isArray(records) && records.length > maxRows) {
    throw new ReportRefused(`${records.length} records (at most ${maxRows})`)
  }
  const checked = feedback.safeParse(root)
  if (!checked.success) {
    const issue = checked.error.issues[0]!
    throw new ReportRefused(`not a valid DMARC report: ${['feedback', ...issue.path].join('.')}: ${issue.message}`)
  }
  return checked.data
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,62})$/

/** Label by label, so that no pattern runs over the whole (hostile) name. */
function isDomainName(v: string): boolean {
  return v.length > 0 && v.length <= 253 && v.split('.').every((l) => LABEL.test(l))
}

function countOf(haystack: string, needle: string): number {
  let n = 0
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + needle.length)) n++
  return n
}
