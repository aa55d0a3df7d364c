// Classification of one SMTP reply (what a remote MX answered us, or what a DSN's
// Diagnostic-Code quotes) into what the relay does next and what it says about the
// recipient. Shared by the relay's delivery worker and the DSN classifier.
//
// The reply code alone is not enough: some 5xx are temporary in practice (greylisting
// answered with 550, "try again later"), and `Status: 5.0.0` beside `550 5.1.1` in a
// diagnostic must give the more specific 5.1.1.

export type ReplyOutcome = 'delivered' | 'deferred' | 'failed'

export interface SmtpReply {
  /** Basic reply code (250, 451, 550). */
  code: number
  /** Enhanced status code (RFC 3463) when the reply carried one: `5.1.1`. */
  enhanced?: string
  /** The reply text, for the cases codes get wrong. */
  text?: string
}

export interface ReplyClass {
  outcome: ReplyOutcome
  /** Reason class in the vocabulary the bounce corpus uses: userunknown, mailboxfull, blocked … */
  reason: string
  /** True only when the address itself is permanently bad: suppress it. */
  hard: boolean
}

/** First-cut rules; the classifier package refines them against the bounce corpus. */
export function classifyReply(reply: SmtpReply): ReplyClass {
  if (reply.code >= 200 && reply.code < 300) return { outcome: 'delivered', reason: 'delivered', hard: false }
  if (reply.code >= 400 && reply.code < 500) return { outcome: 'deferred', reason: 'undefined', hard: false }
  const e = reply.enhanced ?? ''
  if (/^5\.1\.[1-3]$/.test(e)) return { outcome: 'failed', reason: 'userunknown', hard: true }
  if (e === '5.4.4') return { outcome: 'failed', reason: 'hostunknown', hard: true }
  return { outcome: 'failed', reason: 'undefined', hard: false }
}
