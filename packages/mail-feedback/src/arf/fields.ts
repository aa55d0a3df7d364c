import { firstHeader, parseHeaderLines, stripTypePrefix } from '../mime/headers.ts'
import type { FeedbackReport } from '../types.ts'

// The machine-readable part of an RFC 5965 report (message/feedback-report). Field names
// are case-insensitive and providers differ in which optional ones they send: Yahoo's CFL
// sends no Original-Rcpt-To, Microsoft's JMRP sends an old `Version: 0.1`.

export function looksLikeFeedbackReport(text: string): boolean {
  return /^feedback-type\s*:/im.test(text)
}

export function parseFeedbackReport(text: string): FeedbackReport {
  const h = parseHeaderLines(text.replace(/^\s*\n/, ''))
  const addr = (v: string) => stripTypePrefix(v).replace(/^<|>$/g, '').trim().toLowerCase()
  return {
    feedbackType: firstHeader(h, 'feedback-type').toLowerCase(),
    userAgent: firstHeader(h, 'user-agent'),
    version: firstHeader(h, 'version'),
    originalMailFrom: addr(firstHeader(h, 'original-mail-from')),
    originalRcptTo: (h.get('original-rcpt-to') ?? h.get('removal-recipient') ?? []).map(addr).filter(Boolean),
    arrivalDate: firstHeader(h, 'arrival-date') || firstHeader(h, 'received-date'),
    sourceIp: firstHeader(h, 'source-ip'),
    reportedDomain: firstHeader(h, 'reported-domain'),
    authenticationResults: firstHeader(h, 'authentication-results'),
  }
}
