import { bestStatus, replyCodeIn, specificity } from './codes.ts'
import { reasonFromExchangeStatus } from './exchange.ts'
import { isHard, reasonFromStatus, reasonFromText } from './rules.ts'

export interface Diagnosis {
  status: string
  replyCode: string
  reason: string
  hard: boolean
}

export interface DiagnosisInput {
  /** The DSN's Status field (or ''). */
  statusField?: string
  /** The DSN's Diagnostic-Code, or the reply text, the most direct words first. */
  texts: string[]
  /** Less direct words (the human-readable part around the recipient); read only when the direct ones say nothing. */
  context?: string[]
  action?: string
  /** Words read only to tell the SMTP step (the line that leads up to an address). */
  lead?: string
  /** The Diagnostic-Code's type (`smtp`, `x-unix`): who gave the answer. */
  diagnosticType?: string
}

type Phase = 'mail' | 'rcpt' | 'data' | ''

/**
 * The SMTP command a refusal answered, as far as the words tell. Explicit phrases first
 * ("in reply to RCPT TO command", "after end of data"), then a sendmail transcript (the
 * command right before the first `<<<` reply), then any mention of RCPT.
 */
function phaseOf(text: string, status: string): Phase {
  if (/in reply to (end of )?data command|after (end of )?data\b|smtp command:? data\b|error in data\b/i.test(text)) {
    return 'data'
  }
  if (/in reply to mail from command|after mail from\b|smtp command:? mail from\b/i.test(text)) return 'mail'
  if (/in reply to rcpt to command|after rcpt( to)?\b|rcpt to response/i.test(text)) return 'rcpt'
  const transcript = />>> (mail from|rcpt to|data)\b[^<>]*?<<< [45]\d\d/i.exec(text)
  if (transcript) {
    const command = transcript[1]!.toLowerCase()
    return command.startsWith('mail') ? 'mail' : command.startsWith('rcpt') ? 'rcpt' : 'data'
  }
  if (/\brcpt\b|does not like recipient/i.test(text)) return 'rcpt'
  // "550 <a@b>... User unknown", "550: <a@b>: User unknown": the reply echoes the address it
  // judged, the way MTAs answer RCPT TO. Only when no specific code says otherwise
  // (`5.2.1 <a@b>... User unknown` is a disabled mailbox).
  if (specificity(status) <= 0 && echoesAddress(text)) return 'rcpt'
  return ''
}

const REPLY_START = /\b[45]\d\d[ :-]+(\d\.\d{1,3}\.\d{1,3} )?<?/g
const ECHOED_ADDRESS = /^[^\s<>@:-][^\s<>@:]*@[^\s<>@]+?>?(:|\.\.\.) /
/** An address is at most 254 characters; with its brackets and the `...` after it, this many. */
const MAX_ECHO = 264

/**
 * A reply code followed by an address and `:` or `...`. The address is read from each
 * code only as far as an address can reach: as one expression, the address after every
 * code would be scanned to the end of a long run of address characters.
 */
function echoesAddress(text: string): boolean {
  for (const m of text.matchAll(REPLY_START)) {
    const at = m.index + m[0].length
    if (ECHOED_ADDRESS.test(text.slice(at, at + MAX_ECHO))) return true
  }
  return false
}

/** Codes that by themselves say the mailbox does not exist. */
function addressStatus(status: string): boolean {
  return /^5\.1\.(1|3|10|\d{3})$/.test(status)
}

/**
 * Phrases that name the directory lookup itself: no doubt the address is unknown, whatever
 * the step. Gmail's "couldn't be found, or is unable to receive mail" is not one of them: it
 * hedges because all it has is the remote's reply, which is judged on its own.
 */
const DEFINITE_UNKNOWN =
  /recipient name is not recognized|not listed in (the )?(domino |public |global )?(directory|name & address book|address book)|address( you entered)? couldn'?t be found(?!,? or is unable to receive)|\bAS\(201806281\)|\binvalid recipient\b|requested action not taken: mailbox unavailable|check if (the )?address is correct|\bmail\.local: unknown user\b|\buser doesn'?t have an? \S+ account\b|^unknown user: \S+@/i

/**
 * "User unknown" is only believed when the code says so, the words leave no doubt, or the
 * server said it at RCPT TO. Said after DATA (or at an unknown step) the server had
 * already accepted the recipient: a filter speaking (Japanese carriers answer so), not a
 * missing mailbox, and suppressing the address would be wrong.
 */
function confirmUnknown(status: string, text: string, phase: Phase): string {
  if (phase === 'mail') return 'rejected'
  if (addressStatus(status) || DEFINITE_UNKNOWN.test(text)) return 'userunknown'
  return phase === 'rcpt' ? 'userunknown' : 'filtered'
}

function firstReason(texts: string[]): string {
  for (const t of texts) {
    const reason = reasonFromText(t)
    if (reason) return reason
  }
  return ''
}

/** Status, reply code, reason class and hardness for one recipient of a bounce. */
export function diagnose(input: DiagnosisInput): Diagnosis {
  // `Status: 5.4.4 (Illegal host/domain name found)`: the reporting MTA's own gloss.
  const gloss = /\(([^()]+)\)\s*$/.exec(input.statusField ?? '')?.[1] ?? ''
  const texts = [...input.texts, gloss].filter(Boolean)
  const context = (input.context ?? []).filter(Boolean)
  const status = bestStatus(input.statusField ?? '', texts, context)
  let replyCode = ''
  for (const t of [...texts, ...context]) {
    replyCode = replyCodeIn(t, status[0])
    if (replyCode) break
  }
  const action = (input.action ?? '').toLowerCase()
  // A report of success (RFC 3464 delivered, relayed, expanded; a 2.x.x status): no bounce.
  if (/^(delivered|relayed|expanded)$/.test(action) || status.startsWith('2')) {
    return { status, replyCode: '', reason: 'delivered', hard: false }
  }
  // The remote's own words first; a fully specific code before the reporting MTA's
  // surrounding prose; a vague code (5.0.0, 5.5.0) only when nothing else says more.
  // A provider's own code (Microsoft's 5.4.310) yields to any words, the prose's too.
  const provider = reasonFromExchangeStatus(status)
  let reason = firstReason(texts)
  if (!reason && specificity(status) === 2 && !provider) reason = reasonFromStatus(status)
  if (!reason) reason = firstReason(context)
  const worded = !!reason
  if (!reason) reason = provider || reasonFromStatus(status)
  const all = [input.lead ?? '', ...texts, ...context].join('\n').replace(/\s+/g, ' ')
  const phase = phaseOf(all, status)
  if (reason === 'userunknown') reason = confirmUnknown(status, all, phase)
  if (reason === 'hostunknown' && phase === 'mail') reason = 'rejected'
  // A name that did not resolve, said with a temporary code: the lookup failed this time.
  if (reason === 'hostunknown' && status.startsWith('4')) reason = 'networkerror'
  // X.2.3 is the recipient's own limit on message length, not the system's (X.3.4).
  if (reason === 'mesgtoobig' && /^\d\.2\.3$/.test(status)) reason = 'exceedlimit'
  // A local delivery program (x-unix) that failed without saying why: the mailer, not the system.
  if (/^x-unix$/i.test(input.diagnosticType ?? '') && (!reason || reason === 'systemerror')) reason = 'mailererror'
  // A delay notice that says only what the status code says: still in the queue.
  if (action === 'delayed' && (!reason || !worded)) reason = 'expired'
  // A connection that timed out is no verdict on the message; when the MTA stops over it,
  // the message has spent its time in the queue. While it still retries (delayed), the
  // timeout itself is the news.
  if (
    reason === 'networkerror' &&
    !status.startsWith('5') &&
    /^(failed|expired)$/.test(action) &&
    /\btimed? ?out\b/i.test(all)
  )
    reason = 'expired'
  if (action === 'expired') reason = 'expired'
  // A temporary trouble the reporting MTA gave up on: the message expired in its queue.
  if (!reason && status.startsWith('4') && action === 'failed') reason = 'expired'
  if (!reason) reason = 'undefined'
  return { status, replyCode, reason, hard: isHard(reason, status, replyCode, input.action) }
}
