import { reportAttachment } from './attachment.ts'
import { reportXml } from './decompress.ts'
import type { ReportLimits } from './limits.ts'
import { type DmarcReport, parseReport } from './parse.ts'

export type { ReportLimits } from './limits.ts'
export { ReportRefused } from './limits.ts'

/**
 * A stored message to the report mailbox → the aggregate report it carries, within the
 * limits; throws ReportRefused (with the reason the quarantine keeps) for anything else.
 */
export async function readReport(raw: Buffer, limits: ReportLimits): Promise<DmarcReport> {
  const file = await reportAttachment(raw, limits.maxCompressed)
  const xml = await reportXml(file, limits)
  return parseReport(xml, limits.maxRows)
}
