import { mailbox } from './address/mailbox.ts'
import { looksLikeFeedbackReport, parseFeedbackReport } from './arf/fields.ts'
import { attributionHints } from './attribution/hints.ts'
import { signals } from './autoreply/detect.ts'
import { looksLikeDeliveryStatus, parseDeliveryStatus } from './dsn/fields.ts'
import { addressOf, firstHeader, type HeaderMap, headerRecord, parseHeaderLines } from './mime/headers.ts'
import { type ParsedMessage, parseMessage } from './mime/parse.ts'
import { findReturned } from './mime/returned.ts'
import { rcptReplies } from './plain/dialogue.ts'
import { plainRecipients } from './plain/recipients.ts'
import { diagnose } from './reason/diagnose.ts'
import { isHard } from './reason/rules.ts'
import { parseSesNotification, reasonFromSubType, type SesNotification } from './ses/notification.ts'
import type { Classification, ClassifyOptions, FeedbackReport, RecipientReport } from './types.ts'

// One inbound message → what it is (complaint, bounce, auto-reply, operator mail), per
// recipient what happened, and every clue to whom it concerns. Pure and total: whatever
// the bytes, it resolves (never rejects) with a classification, `unparseable` at worst.

const DELIVERY_STATUS_TYPES = new Set(['message/delivery-status', 'message/global-delivery-status'])
const MAX_TEXT = 200_000
/** Recipients reported at most, whatever kind of report names them (a DSN keeps 500 of its own). */
const MAX_RECIPIENTS = 500
const INLINE_DSN_START =
  /^(reporting-mta|received-from-mta|original-envelope-id|final-recipient|original-recipient)[ \t]*:/im
/** An attached message that is itself a report (a forwarded DSN or ARF). */
const FORWARDED_REPORT = /^(content-type:[ \t]*multipart\/report\b|final-recipient[ \t]*:|feedback-type[ \t]*:)/im
/** Words of a complaint: an abuse or spam report, a message marked as spam. */
const COMPLAINT =
  /\b(abuse|spam|complaint|fbl|feedback[ -]loop) report\b|\bspam complaint\b|\breported as (spam|junk|abuse)\b|\bmarked (it |this |the )?(message |e-?mail |mail )?as (spam|junk)\b/i
const OUR_HEADER_LINE = /^(x-atmos-ref|x-atmos-member-did|feedback-id|dkim-signature)[ \t]*:.*(\n[ \t].*)*/gim

const EMPTY_FEEDBACK: FeedbackReport = {
  feedbackType: '',
  userAgent: '',
  version: '',
  originalMailFrom: '',
  originalRcptTo: [],
  arrivalDate: '',
  sourceIp: '',
  reportedDomain: '',
  authenticationResults: '',
}
const NO_DETAIL: RecipientReport = {
  address: '',
  action: '',
  status: '',
  replyCode: '',
  diagnostic: '',
  remoteMta: '',
  reason: '',
  hard: false,
}

function collapse(text: string, max = 1000): string {
  const t = text.replace(/\s+/g, ' ').trim()
  return t.length > max ? `${t.slice(0, max)}…` : t
}

/** Our own header lines wherever they appear (a bounce that quotes the original in its text). */
function looseHeaders(msg: ParsedMessage): HeaderMap {
  const lines = [msg.text, ...msg.parts.map((p) => p.text)].flatMap(
    (t) => t.slice(0, MAX_TEXT).match(OUR_HEADER_LINE) ?? [],
  )
  return parseHeaderLines(lines.join('\n'))
}

/** The address the report names, when the value is one; '' (not named) for anything else. */
function reported(value: string): string {
  return mailbox(addressOf(value))
}

/** Whom a complaint without Original-Rcpt-To concerns: Microsoft's header, else the original's To. */
function complainedAddresses(returned: HeaderMap, report: HeaderMap): string[] {
  return (
    returned.get('x-hmxmroriginalrecipient') ??
    report.get('x-hmxmroriginalrecipient') ??
    returned.get('to') ??
    []
  )
    .map(reported)
    .filter(Boolean)
}

/**
 * Where the first paragraph break in `text` starts: a run of white space holding three line
 * breaks, or two with text right after the second. Read run by run, in one pass (as a
 * regular expression, `\n\s*\n(?=\S)` rescans a long run from each of its line breaks).
 */
function paragraphBreak(text: string): number {
  for (const run of text.matchAll(/\s+/g)) {
    const gap = run[0]
    const first = gap.indexOf('\n')
    if (first < 0) continue
    const breaks = gap.split('\n').length - 1
    const textAfter = gap.endsWith('\n') && run.index + gap.length < text.length
    if (breaks >= 3 || (breaks === 2 && textAfter)) return run.index + first
  }
  return -1
}

/** The words in the human-readable text about one address: from where it is named to the next blank-line gap. */
function contextFor(human: string, humanLower: string, address: string): string {
  if (!address) return ''
  const i = humanLower.indexOf(address.toLowerCase())
  if (i < 0) return ''
  const rest = human.slice(i, i + 2000)
  const para = paragraphBreak(rest.slice(address.length + 1))
  const end = para >= 0 ? address.length + 1 + para + 1 : rest.length
  // A paragraph that only names the address says nothing; give it the next one too.
  return rest.slice(0, Math.max(end, Math.min(rest.length, 600)))
}

const REPLY_LINE = /^\s*(?:<<<\s*)?([45]\d\d)([- ])(?:\d\.\d{1,3}\.\d{1,3}\s)?(.*)$/

/**
 * Sendmail writes only the first line of a multi-line reply (`552-5.7.0 … a potential`) into
 * Diagnostic-Code; its transcript has the rest (`<<< 552-5.7.0 security issue …`).
 */
function completeReply(diagnostic: string, human: string): string {
  const first = /^\s*([45]\d\d)-(.*)$/.exec(diagnostic)
  if (!first) return diagnostic
  const code = first[1]!
  const lines = human.split('\n')
  const at = lines.findIndex((l) => l.replace(/^\s*(<<<\s*)?/, '').trim() === diagnostic.trim())
  if (at < 0) return diagnostic
  const more: string[] = []
  for (const line of lines.slice(at + 1)) {
    const m = REPLY_LINE.exec(line)
    if (!m || m[1] !== code) break
    more.push(m[3]!.trim())
    if (m[2] === ' ') break
  }
  return more.length ? `${diagnostic.trim()} ${more.join(' ')}` : diagnostic
}

/** Control bytes a mail message does not contain (ESC is allowed: ISO-2022-JP text uses it). */
function isBinaryGarbage(raw: Buffer): boolean {
  const sample = raw.subarray(0, 4096)
  let control = 0
  for (const b of sample) if (b === 0 || (b < 32 && b !== 9 && b !== 10 && b !== 13 && b !== 27) || b === 127) control++
  return sample.length > 0 && control / sample.length > 0.05
}

/**
 * `{ truncated }` when the report named more recipients than are kept, with a note saying
 * so; nothing otherwise.
 */
function cut(seen: number, kept: number, notes: string[]): { truncated?: { kept: number; seen: number } } {
  if (seen <= kept) return {}
  notes.push(`the report names ${seen} recipients; only the first ${kept} are reported`)
  return { truncated: { kept, seen } }
}

async function classifyParsed(raw: Buffer, opts: ClassifyOptions, nested = false): Promise<Classification> {
  if (raw.length === 0 || !raw.toString('latin1', 0, 65536).trim()) {
    return unparseable('empty message', opts)
  }
  if (isBinaryGarbage(raw)) return unparseable('not a mail message: binary content', opts)
  const msg = await parseMessage(raw, opts.maxBytes)
  if (msg.headers.size === 0) return unparseable('not a mail message: no header fields', opts, msg.notes)
  const notes = [...msg.notes]
  const returned = findReturned(msg)
  // DSN fields in the text: a broken MIME structure, or an MTA that writes them inline.
  const inlineAt = msg.text.search(INLINE_DSN_START)
  const inlineDsn = inlineAt >= 0 && looksLikeDeliveryStatus(msg.text.slice(inlineAt)) ? inlineAt : -1
  const cuts = [returned.textCut, inlineDsn].filter((i) => i >= 0)
  const human = (cuts.length ? msg.text.slice(0, Math.min(...cuts)) : msg.text).slice(0, MAX_TEXT)
  const humanLower = human.toLowerCase()
  const base = {
    notes,
    returnedHeaders: returned.headers.size ? headerRecord(returned.headers) : undefined,
  }
  const hints = (originalMailFrom?: string) =>
    attributionHints(
      { returned: returned.headers, looseReturned: looseHeaders(msg), originalMailFrom, report: msg.headers },
      opts,
    )

  // ARF: a feedback-report part, or a report-type that promises one.
  const arfPart =
    msg.parts.find((p) => p.contentType === 'message/feedback-report') ??
    (msg.reportType === 'feedback-report' ? msg.parts.find((p) => looksLikeFeedbackReport(p.text)) : undefined)
  if (arfPart || msg.reportType === 'feedback-report') {
    if (!arfPart)
      return {
        kind: 'unparseable',
        ...base,
        notes: [...notes, 'feedback report without a message/feedback-report part'],
        recipients: [],
        attribution: hints(),
      }
    const feedback = parseFeedbackReport(arfPart.text)
    if (!feedback.feedbackType) notes.push('feedback report has no Feedback-Type; read as abuse')
    feedback.feedbackType ||= 'abuse'
    let addresses = feedback.originalRcptTo.map(mailbox).filter(Boolean)
    if (!addresses.length) addresses = complainedAddresses(returned.headers, msg.headers)
    const truncated = cut(addresses.length, MAX_RECIPIENTS, notes)
    addresses = addresses.slice(0, MAX_RECIPIENTS)
    if (!addresses.length) addresses = ['']
    const recipients = addresses.map(
      (address): RecipientReport => ({
        address,
        action: '',
        status: '',
        replyCode: '',
        diagnostic: '',
        remoteMta: '',
        reason: 'feedback',
        hard: false,
      }),
    )
    return { kind: 'arf', ...base, recipients, feedback, attribution: hints(feedback.originalMailFrom), ...truncated }
  }

  // Apple Mail's one-click unsubscribe: a mail to the List-Unsubscribe address, not RFC 5965,
  // but an opt-out all the same. Known by its header, or by the wording Apple Mail and iOS Mail
  // write into a message with an empty Subject (as described since iOS 10).
  if (firstHeader(msg.headers, 'x-apple-unsubscribe').toLowerCase() === 'true' || isAppleUnsubscribeText(msg)) {
    const address = reported(firstHeader(msg.headers, 'from'))
    return {
      kind: 'arf',
      ...base,
      notes: [...notes, 'Apple Mail unsubscribe request (not an RFC 5965 report)'],
      feedback: { ...EMPTY_FEEDBACK, feedbackType: 'opt-out', userAgent: 'Apple Mail', originalRcptTo: [address] },
      recipients: [{ ...NO_DETAIL, address, reason: 'feedback' }],
      attribution: hints(),
    }
  }

  // Amazon SES: a JSON notification (bare or in SNS's envelope) as the body or a part.
  const ses = [
    msg.text,
    ...msg.parts.filter((p) => /^(application\/json|text\/plain)$/.test(p.contentType)).map((p) => p.text),
  ]
    .map(parseSesNotification)
    .find(Boolean)
  if (ses) return fromSes(ses, notes, opts)

  // RFC 3464: a delivery-status part (or its fields sent as text/plain).
  const dsnPart =
    msg.parts.find((p) => DELIVERY_STATUS_TYPES.has(p.contentType)) ??
    msg.parts.find((p) => p.contentType.startsWith('text/') && looksLikeDeliveryStatus(p.text))
  const dsnText = dsnPart?.text ?? (inlineDsn >= 0 ? msg.text.slice(inlineDsn, inlineDsn + MAX_TEXT) : undefined)
  const dsn = dsnText ? parseDeliveryStatus(dsnText) : undefined
  // Each recipient's own refusal in a quoted SMTP dialogue, said by the remote itself.
  const dialogue = rcptReplies(human)
  if (dsn?.recipients.length) {
    const truncated = cut(dsn.seen, dsn.recipients.length, notes)
    const recipients = dsn.recipients.map((r): RecipientReport => {
      const context = contextFor(human, humanLower, r.address || r.written)
      const diagnostic = completeReply(r.diagnostic, human)
      const d = diagnose({
        statusField: r.status,
        texts: [diagnostic, dialogue.get(r.address) ?? ''],
        context: [context, dsn.recipients.length === 1 ? human : ''],
        action: r.action,
        diagnosticType: r.diagnosticType,
      })
      return {
        address: r.address,
        action: r.action,
        status: d.status,
        replyCode: d.replyCode,
        diagnostic: collapse(diagnostic || context),
        remoteMta: r.remoteMta,
        reason: d.reason,
        hard: d.hard,
      }
    })
    return { kind: 'dsn', ...base, recipients, attribution: hints(), ...truncated }
  }
  // A report forwarded as an attachment (one level deep): its fields sit in the message/rfc822 part.
  const forwarded = nested
    ? undefined
    : msg.parts.find((p) => p.contentType === 'message/rfc822' && FORWARDED_REPORT.test(p.text.slice(0, 65536)))
  if (forwarded) {
    const inner = await classifyParsed(Buffer.from(forwarded.text, 'utf8'), opts, true)
    if (inner.kind === 'dsn' || inner.kind === 'arf')
      return { ...inner, notes: [...notes, 'report read from an attached message/rfc822 part', ...inner.notes] }
  }
  if (msg.reportType === 'delivery-status')
    notes.push('delivery report without a readable message/delivery-status part; read as text')

  const sig = signals(msg.headers, msg.subject, human, opts.envelope?.mailFrom)
  // A complaint as a plain multipart with only the original attached (feedback loops that
  // predate RFC 5965): said in its subject or text, the complained-about message attached.
  if (
    !sig.bounce &&
    !dsnPart &&
    msg.contentType.startsWith('multipart/') &&
    msg.parts.some((p) => p.contentType === 'message/rfc822') &&
    returned.headers.size &&
    (COMPLAINT.test(msg.subject) || COMPLAINT.test(human.slice(0, 4000)))
  ) {
    const found = complainedAddresses(returned.headers, msg.headers)
    const truncated = cut(found.length, MAX_RECIPIENTS, notes)
    const addresses = found.slice(0, MAX_RECIPIENTS)
    return {
      kind: 'arf',
      ...base,
      notes: [...notes, 'complaint without a message/feedback-report part (not RFC 5965); read as abuse'],
      feedback: { ...EMPTY_FEEDBACK, feedbackType: 'abuse', originalRcptTo: addresses },
      recipients: (addresses.length ? addresses : ['']).map((address) => ({
        ...NO_DETAIL,
        address,
        reason: 'feedback',
      })),
      attribution: hints(),
      ...truncated,
    }
  }
  if (!sig.bounce && !dsnPart && msg.reportType !== 'delivery-status') {
    if (sig.autoReply) {
      const address = reported(firstHeader(msg.headers, 'from'))
      return {
        kind: 'auto_reply',
        ...base,
        attribution: hints(),
        recipients: [
          {
            address,
            action: '',
            status: '',
            replyCode: '',
            diagnostic: '',
            remoteMta: '',
            reason: 'vacation',
            hard: false,
          },
        ],
      }
    }
    return {
      kind: 'other',
      ...base,
      notes: [...notes, 'not a delivery or feedback report'],
      recipients: [],
      attribution: hints(),
    }
  }

  // A bounce in words only.
  const exclude = new Set<string>()
  for (const name of ['from', 'to', 'return-path', 'sender', 'reply-to']) {
    for (const v of msg.headers.get(name) ?? []) exclude.add(addressOf(v))
  }
  for (const v of returned.headers.get('from') ?? []) exclude.add(addressOf(v))
  for (const a of opts.envelope?.rcptTo ?? []) exclude.add(addressOf(a))
  const failed = [
    ...new Set(
      (msg.headers.get('x-failed-recipients') ?? [])
        .flatMap((v) => v.split(','))
        .map(reported)
        .filter(Boolean),
    ),
  ]
  const plain = plainRecipients(human, exclude)
  let found = plain.recipients
  const truncated = failed.length ? cut(failed.length, MAX_RECIPIENTS, notes) : cut(plain.seen, found.length, notes)
  if (failed.length) {
    const byAddress = new Map(found.map((f) => [f.address, f]))
    found = failed.slice(0, MAX_RECIPIENTS).map((address) => {
      const seen = byAddress.get(address)
      return {
        address,
        snippet: seen?.snippet ?? contextFor(human, humanLower, address),
        lead: seen?.lead ?? '',
        session: seen?.session ?? '',
      }
    })
  }
  if (!found.length) {
    const to = (returned.headers.get('to') ?? []).map(reported).filter(Boolean).slice(0, MAX_RECIPIENTS)
    found = (to.length ? to : ['']).map((address) => ({ address, snippet: '', lead: '', session: '' }))
  }
  const recipients = found.map((r): RecipientReport => {
    // The remote's answer in the dialogue above the address is more direct than the
    // reporting MTA's own line about it ("Remote protocol error").
    const own = dialogue.get(r.address)
    const session = own ? `RCPT TO:<${r.address}>\n${own}` : r.session
    const d = diagnose({
      texts: [session, r.snippet],
      context: [found.length === 1 ? human : ''],
      lead: [session, r.lead].filter(Boolean).join('\n'),
    })
    return {
      address: r.address,
      action: 'failed',
      status: d.status,
      replyCode: d.replyCode,
      diagnostic: collapse(r.snippet || human),
      remoteMta: '',
      reason: d.reason,
      hard: d.hard,
    }
  })
  return { kind: 'plain_bounce', ...base, recipients, attribution: hints(), ...truncated }
}

/** An SES notification as a DSN (bounces, deliveries) or an ARF report (complaints). */
function fromSes(n: SesNotification, notes: string[], opts: ClassifyOptions): Classification {
  const attribution = attributionHints({ returned: n.headers, report: new Map(), originalMailFrom: n.source }, opts)
  const all = [...notes, `Amazon SES ${n.type} notification`]
  const truncated = cut(n.seen, n.recipients.length, all)
  const base = {
    notes: all,
    returnedHeaders: n.headers.size ? headerRecord(n.headers) : undefined,
    attribution,
    ...truncated,
  }
  if (n.type === 'complaint' && /^onaccountsuppressionlist$/i.test(n.complaintSubType)) {
    // Not sent at all: the address complained before. Neither a new complaint nor a bounce of the address.
    const recipients = n.recipients.map(
      (r): RecipientReport => ({ ...NO_DETAIL, address: r.address, action: 'failed', reason: 'suppressed' }),
    )
    return { kind: 'dsn', ...base, notes: [...base.notes, 'not sent: on the SES account suppression list'], recipients }
  }
  if (n.type === 'complaint') {
    const addresses = n.recipients.map((r) => r.address)
    const feedback: FeedbackReport = {
      ...EMPTY_FEEDBACK,
      feedbackType: n.complaintFeedbackType || 'abuse',
      userAgent: n.userAgent,
      originalMailFrom: n.source,
      originalRcptTo: addresses.filter(Boolean),
      arrivalDate: n.arrivalDate,
    }
    const recipients = (addresses.length ? addresses : ['']).map(
      (address): RecipientReport => ({ ...NO_DETAIL, address, reason: 'feedback' }),
    )
    return { kind: 'arf', ...base, recipients, feedback }
  }
  const transient = /^transient$/i.test(n.bounceType)
  const recipients = n.recipients.map((r): RecipientReport => {
    const action = r.action || (n.type === 'delivery' ? 'delivered' : 'failed')
    const d = diagnose({ statusField: r.status, texts: [r.diagnosticCode], action })
    // The remote's words and codes first; SES's own subtype only when they say nothing.
    const bySubType = reasonFromSubType(n.bounceSubType)
    const reason = d.reason === 'undefined' && bySubType ? bySubType : d.reason
    return {
      address: r.address,
      action,
      status: d.status,
      replyCode: d.replyCode,
      diagnostic: collapse(r.diagnosticCode),
      remoteMta: n.remoteMta,
      reason,
      // A transient bounce never suppresses, whatever the words.
      hard: !transient && isHard(reason, d.status, d.replyCode, action),
    }
  })
  return { kind: 'dsn', ...base, recipients }
}

function unparseable(reason: string, opts: ClassifyOptions, notes: string[] = []): Classification {
  let attribution: Classification['attribution'] = []
  try {
    attribution = attributionHints({ returned: new Map(), report: new Map() }, opts)
  } catch {
    attribution = []
  }
  return { kind: 'unparseable', notes: [...notes, reason], recipients: [], attribution }
}

const APPLE_UNSUBSCRIBE = /^(?:Apple|iOS) Mail sent this email to unsubscribe from the message\b/

function isAppleUnsubscribeText(msg: { headers: Parameters<typeof firstHeader>[0]; text: string }): boolean {
  return firstHeader(msg.headers, 'subject').trim() === '' && APPLE_UNSUBSCRIBE.test(msg.text.trimStart().slice(0, 200))
}

export async function classifyMessage(raw: Buffer | string, opts: ClassifyOptions = {}): Promise<Classification> {
  try {
    const buf = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : Buffer.isBuffer(raw) ? raw : Buffer.alloc(0)
    return await classifyParsed(buf, opts)
  } catch (err) {
    return unparseable(`classifier failed: ${(err as Error)?.message ?? String(err)}`, opts)
  }
}
