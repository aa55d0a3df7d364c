// Classification of one SMTP reply (what a remote MX answered us) into what the relay does
// next and what it says about the recipient. The relay's delivery worker calls it on every
// reply; the DSN classifier reads bounces with the same rules (reason/), so a recipient
// gets the same verdict whether we saw the rejection live or in a bounce.
//
// The reply code alone is not enough: some 5xx are temporary in practice (greylisting
// answered with 550, "try again later"), and a reply's enhanced code may be more specific
// than the basic code says.

import { diagnose } from './reason/diagnose.ts'

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

/** 5xx replies that mean "later", not "never". */
const TEMPORARY_IN_5XX =
  /\bgreylist|\bgrey-?listed|\bgray-?list|\btry (again )?later\b|\btemporar(y|ily)\b|\bplease retry\b|\bretry in\b/i

export function classifyReply(reply: SmtpReply): ReplyClass {
  const code = Number.isInteger(reply.code) ? reply.code : 0
  if (code >= 200 && code < 300) return { outcome: 'delivered', reason: 'delivered', hard: false }
  const text = reply.text ?? ''
  const enhanced = /^[245]\.\d{1,3}\.\d{1,3}$/.test(reply.enhanced ?? '') ? reply.enhanced! : ''
  const codeText = code >= 400 && code < 600 ? String(code) : ''
  // A 4xx reply is a deferral whatever its text, and so is a 5xx that asks to retry; only
  // the class letter changes, so the same rules still name the reason.
  const temporary = codeText.startsWith('4') || (codeText.startsWith('5') && TEMPORARY_IN_5XX.test(text))
  const status = enhanced && temporary && enhanced[0] === '5' ? `4${enhanced.slice(1)}` : enhanced
  const d = diagnose({
    statusField: status,
    texts: [`${temporary ? codeText.replace(/^5/, '4') : codeText} ${status} ${text}`],
    action: temporary ? 'delayed' : 'failed',
  })
  if (temporary || !codeText) return { outcome: 'deferred', reason: d.reason, hard: false }
  return { outcome: 'failed', reason: d.reason, hard: d.hard }
}
