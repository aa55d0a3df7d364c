import { reportAttachment } from './attachment.ts'
import { reportXml } from './decompress.ts'
import type { ReportLimits } from './limits.ts'
import { type DmarcReport, parseReport } from './parse.ts'

export type { ReportLimits } from './limits.ts'
export { ReportRefused } from './limits.ts'

/**
 * A stored message to the report mailbox → the aggregate report it carries, within the
 * limits; throws ReportRefused (with the reason the quarantine keeps) for anything else.
 * One report is read at a time in a process, whatever the worker concurrency: a report near
 * the limits holds its XML and tree in memory, and four at once would hold four.
 */
export function readReport(raw: Buffer, limits: ReportLimits): Promise<DmarcReport> {
  const run = reading.then(async () => {
    const file = await reportAttachment(raw, limits.maxCompressed)
    const xml = await reportXml(file, limits)
    return parseReport(xml, limits.maxRows)
  })
  reading = run.then(
    () => undefined,
    () => undefined,
  )
  return run
}

let reading: Promise<void> = Promise.resolve()
