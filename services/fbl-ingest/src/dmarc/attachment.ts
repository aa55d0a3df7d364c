import { simpleParser } from 'mailparser'
import { ReportRefused } from './limits.ts'

// Where the report is in the message. RFC 7489 §7.2.1.1 says a gzip or zip attachment; in the
// wild: application/zip (Google), application/gzip (Microsoft, Yahoo), text/xml, and
// application/octet-stream that only the filename tells apart. The bytes' own magic decides
// how they are read, never the declared type, which the sender chose.

export type ReportFile = { format: 'zip' | 'gzip' | 'xml'; name: string; content: Buffer }

const REPORT_TYPES = new Set([
  'application/zip',
  'application/x-zip-compressed',
  'application/x-zip',
  'application/gzip',
  'application/x-gzip',
  'application/xml',
  'text/xml',
])
const REPORT_NAME = /\.(zip|gz|gzip|xml)$/i

/** The first part that looks like a report (by type, or by name for octet-stream and friends). */
export async function reportAttachment(raw: Buffer, maxCompressed: number): Promise<ReportFile> {
  // The message itself is bounded by the listener (fblIngest.smtp.maxSize); mailparser holds it whole.
  const parsed = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true })
  const candidates = parsed.attachments.filter(
    (a) => REPORT_TYPES.has(a.contentType.toLowerCase()) || REPORT_NAME.test(a.filename ?? ''),
  )
  const part = candidates[0]
  if (!part) {
    const types = parsed.attachments.map((a) => a.contentType).slice(0, 5)
    throw new ReportRefused(
      `no report attachment (zip, gzip or xml)${types.length ? `; attachments: ${types.join(', ')}` : ''}`,
    )
  }
  const content = part.content
  if (content.length > maxCompressed) {
    throw new ReportRefused(`report attachment of ${content.length} bytes exceeds the limit of ${maxCompressed}`)
  }
  return { format: formatOf(content), name: (part.filename ?? '').slice(0, 255), content }
}

function formatOf(b: Buffer): ReportFile['format'] {
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 0x03 && b[3] === 0x04) return 'zip'
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip'
  return 'xml'
}
