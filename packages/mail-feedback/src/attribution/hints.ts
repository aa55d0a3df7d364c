import { MEMBER_DID_HEADER, REFERENCE_HEADER, readFeedbackId, readMessageToken, readVerpAddress } from '../ids.ts'
import { addressOf, type HeaderMap } from '../mime/headers.ts'
import type { AttributionHint, ClassifyOptions, HintSource } from '../types.ts'

// Every clue to which member and message a report is about, pure: the service maps them
// to rows. Order is the priority (member DID header, Feedback-ID, DKIM d=, then the
// signed tokens); each hint says where it was read and whether its HMAC was checked.

const DID = /^did:(plc:[a-z2-7]{24}|web:[a-z0-9.:%-]{1,253})$/

export interface HintInputs {
  /** Headers of the returned original message. */
  returned: HeaderMap
  /** Our header lines found anywhere in the text when no returned message part exists. */
  looseReturned?: HeaderMap
  /** ARF Original-Mail-From. */
  originalMailFrom?: string
  /** The report's own headers (its To: is the original envelope sender, a VERP address). */
  report: HeaderMap
}

function dkimDomains(values: string[]): string[] {
  const out: string[] = []
  for (const v of values) {
    const m = /(?:^|;)\s*d\s*=\s*([^;\s]+)/i.exec(v)
    if (m) out.push(m[1]!.toLowerCase().replace(/\.$/, ''))
  }
  return out
}

export function attributionHints(inputs: HintInputs, opts: ClassifyOptions): AttributionHint[] {
  const hints: AttributionHint[] = []
  const seen = new Set<string>()
  const add = (key: string, hint: AttributionHint) => {
    if (seen.has(key)) return
    seen.add(key)
    hints.push(hint)
  }
  const headerSets: HeaderMap[] = [inputs.returned, inputs.looseReturned ?? new Map()]
  const values = (name: string) => headerSets.flatMap((h) => h.get(name.toLowerCase()) ?? [])

  for (const v of values(MEMBER_DID_HEADER)) {
    const did = v.trim()
    if (DID.test(did)) add(`did ${did}`, { kind: 'member-did', did, source: 'returned-headers', verified: false })
  }
  if (opts.feedbackSenderId) {
    for (const v of values('feedback-id')) {
      const memberId = readFeedbackId(v, opts.feedbackSenderId)
      if (memberId !== null) {
        add(`fid ${memberId}`, { kind: 'feedback-id', memberId, source: 'returned-headers', verified: false })
      }
    }
  }
  const pool = opts.poolDomain?.toLowerCase()
  for (const domain of dkimDomains(values('dkim-signature'))) {
    if (domain !== pool)
      add(`dkim ${domain}`, { kind: 'dkim-domain', domain, source: 'returned-headers', verified: false })
  }
  const verp = opts.verp
  if (!verp) return hints
  for (const v of values(REFERENCE_HEADER)) {
    const messageId = readMessageToken(verp, v)
    if (messageId) add(`ref ${messageId}`, { kind: 'reference', messageId, source: 'returned-headers', verified: true })
  }
  const candidates: [string, HintSource][] = [
    ...(opts.envelope?.rcptTo ?? []).map((a): [string, HintSource] => [a, 'envelope-rcpt-to']),
    [inputs.originalMailFrom ?? '', 'original-mail-from'],
    ...values('return-path').map((a): [string, HintSource] => [addressOf(a), 'return-path']),
    ...(inputs.report.get('to') ?? []).map((a): [string, HintSource] => [addressOf(a), 'report-headers']),
  ]
  for (const [address, source] of candidates) {
    if (!address) continue
    const messageId = readVerpAddress(verp, address)
    if (messageId) add(`verp ${messageId} ${source}`, { kind: 'verp', messageId, source, verified: true })
  }
  return hints
}
