/** What one report may cost (fblIngest.dmarc): bytes in and out of decompression, entries, rows. */
export type ReportLimits = {
  maxCompressed: number
  maxUncompressed: number
  maxZipEntries: number
  maxRatio: number
  maxRows: number
}

/** A report refused for what it is, not for a failure of ours: the message is quarantined with `reason`. */
export class ReportRefused extends Error {
  readonly reason: string
  constructor(reason: string) {
    super(reason)
    this.reason = reason
  }
}
