import type { VerpConfig } from './ids.ts'

/** What an inbound message is, as far as feedback handling goes. */
export type MessageKind =
  /** An RFC 5965 feedback report: a complaint, not a bounce. */
  | 'arf'
  /** An RFC 3464 delivery status notification. */
  | 'dsn'
  /** A bounce from an MTA that does not send RFC 3464. */
  | 'plain_bounce'
  /** A vacation or out-of-office answer: says nothing about deliverability. */
  | 'auto_reply'
  /** Not a report at all: mail for the operator. */
  | 'other'
  /** Could not be read; `reason` says why. */
  | 'unparseable'

/** Where an attribution hint was read. */
export type HintSource =
  | 'envelope-rcpt-to'
  | 'returned-headers'
  | 'original-mail-from'
  | 'return-path'
  | 'report-headers'

export type AttributionHint =
  /** `X-Atmos-Member-Did`: a claim in a header, not signed by us. */
  | { kind: 'member-did'; did: string; source: HintSource; verified: false }
  /** Our Feedback-ID: names a member id, not signed by us. */
  | { kind: 'feedback-id'; memberId: number; source: HintSource; verified: false }
  /** `d=` of a DKIM-Signature in the returned message (the signature itself is not checked here). */
  | { kind: 'dkim-domain'; domain: string; source: HintSource; verified: false }
  /** `X-Atmos-Ref`: a token whose HMAC matched. */
  | { kind: 'reference'; messageId: string; source: HintSource; verified: true }
  /** A VERP address whose HMAC matched. */
  | { kind: 'verp'; messageId: string; source: HintSource; verified: true }

export interface RecipientReport {
  /**
   * The failed (or complained-about) address, lower-cased: always a syntactically valid
   * address the report names; '' when it names none (or only something that is not one).
   */
  address: string
  /** DSN Action (failed, delayed, delivered, relayed, expanded); '' when unknown. */
  action: string
  /** Enhanced status code (`5.1.1`), or ''. */
  status: string
  /** SMTP reply code (`550`), or ''. */
  replyCode: string
  /** What the remote said, whitespace collapsed. */
  diagnostic: string
  /** The MTA that gave the answer, when named. */
  remoteMta: string
  /** Reason class: userunknown, hostunknown, hasmoved, notaccept, mailboxfull, blocked, spamdetected, expired, feedback, vacation … */
  reason: string
  /** True only when the address itself is permanently bad (it should be suppressed). */
  hard: boolean
}

/** The machine-readable part of an ARF report. */
export interface FeedbackReport {
  feedbackType: string
  userAgent: string
  version: string
  originalMailFrom: string
  originalRcptTo: string[]
  arrivalDate: string
  sourceIp: string
  reportedDomain: string
  authenticationResults: string
}

export interface Classification {
  kind: MessageKind
  /** Why a message is `unparseable` or `other`, or what was noticed on the way (truncation). */
  notes: string[]
  recipients: RecipientReport[]
  /** ARF only. */
  feedback?: FeedbackReport
  /** Headers of the returned original message (ARF and DSN), as read: name (lower-case) → values. */
  returnedHeaders?: Record<string, string[]>
  /** Every attribution hint found, in priority order; the caller decides which to trust. */
  attribution: AttributionHint[]
  /**
   * Set only when the report named more recipients than the classifier reports: the first
   * `kept` are in `recipients`, `seen` were named (as far as the bounded input was read).
   * The rest got no verdict: neither bounced nor suppressed.
   */
  truncated?: { kept: number; seen: number }
}

export interface ClassifyOptions {
  /** Pool identity: without it, VERP and reference tokens cannot be verified and give no hints. */
  verp?: VerpConfig
  /** The pool's Feedback-ID SenderId (`pool.feedbackSenderId`). */
  feedbackSenderId?: string
  /** The pool's own DKIM domain: its `d=` says nothing about the member and is left out of the hints. */
  poolDomain?: string
  /** The SMTP envelope the message arrived with. `mailFrom: ''` is the null sender of bounces. */
  envelope?: { mailFrom?: string; rcptTo?: string[] }
  /** Bytes read at most (default 4 MiB); the rest is ignored and a note says so. */
  maxBytes?: number
}
