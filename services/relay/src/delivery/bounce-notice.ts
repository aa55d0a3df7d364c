import { randomBytes, randomUUID } from 'node:crypto'
import type { PoolMessage } from '@atmos/db'
import { type SigningKeys, signAsPool } from '@atmos/dkim'

// The member is told when a recipient of its mail bounced (a 5xx, or expiry): an RFC 3464
// delivery status notification to the domain's forward-to address when the member set one,
// else to the message's envelope sender, from the pool's
// MAILER-DAEMON with a null envelope sender (RFC 3464 section 2, RFC 5321 section 6.2: no
// notice about a notice), DKIM-signed by the pool so that it passes the pool domain's DMARC.
// It is the pool's own mail (member_id null): a bounce of it is recorded and never answered.

/** How long the relay keeps trying to deliver a bounce notice. */
export const NOTICE_LIFETIME_MS = 2 * 86_400_000

/** The longest line a notice carries (RFC 5322: 998 octets without the CRLF). */
const MAX_LINE = 998
/** The original's header section is returned up to this size. */
const MAX_RETURNED_HEADERS = 64 * 1024

export type BounceFacts = {
  /** The bounced message: its id, envelope sender, spooled bytes and arrival. */
  message: {
    id: string
    envelopeFrom: string
    body: Buffer
    receivedAt: Date
    /** The forward-to address of the member's domain the message was sent as: it gets the notice when set. */
    forwardTo?: string | null | undefined
  }
  recipient: string
  /** Enhanced status of the failure (5.1.1); expiry is reported as 5.4.7. */
  status: string
  /** The reply that decided it ("550 5.1.1 User unknown"), or why there was none. */
  diagnostic: string
  /** The MX host that answered, when one did. */
  remoteMta?: string | undefined
  lastAttemptAt: Date
  /** True when the message expired rather than being refused. */
  expired: boolean
}

export type NoticeIdentity = {
  /** The pool domain: From is MAILER-DAEMON there, and the signature's d=. */
  poolDomain: string
  /** Reporting-MTA: the name the relay gives in EHLO. */
  reportingMta: string
}

/** A plain ASCII mailbox, as submission accepts in MAIL FROM; anything else gets no notice. */
const SENDER =
  /^[^\s<>()\\,;:"@]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/i

/** Whether a message's envelope sender may be sent a notice: not the null sender, a plain address. */
export function noticeRecipient(envelopeFrom: string): string | undefined {
  const sender = envelopeFrom.trim()
  return /^[\x21-\x7e]{3,320}$/.test(sender) && SENDER.test(sender) ? sender : undefined
}

/** RFC 5322 date-time in UTC. */
function rfc5322Date(d: Date): string {
  return d.toUTCString().replace('GMT', '+0000')
}

/** Printable ASCII on one line, at most `max` characters: what a remote MX said is untrusted. */
function oneLine(value: string, max: number): string {
  const text = value
    .replace(/[^\x20-\x7e]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
  return text.length > max ? `${text.slice(0, max - 3)}...` : text
}

/** The original's header section, bounded, with CRLF line ends and no line over the limit. */
function returnedHeaders(body: Buffer): Buffer {
  const head = body.subarray(0, Math.min(body.length, MAX_RETURNED_HEADERS + 4)).toString('latin1')
  const end = head.search(/\r?\n\r?\n/)
  let section = end >= 0 ? head.slice(0, end) : head
  if (end < 0 || section.length > MAX_RETURNED_HEADERS) {
    // Cut before the last field that does not fit whole.
    section = section.slice(0, MAX_RETURNED_HEADERS)
    const lastField = section.search(/\r?\n[^ \t][^\n]*$/)
    if (lastField > 0) section = section.slice(0, lastField)
  }
  const lines = section.split(/\r?\n/).map((l) => (l.length > MAX_LINE ? l.slice(0, MAX_LINE) : l))
  return Buffer.from(`${lines.join('\r\n')}\r\n`, 'latin1')
}

/** The original's Message-ID, when it is one a References field can carry. */
function originalMessageId(headers: Buffer): string | undefined {
  const m = /^message-id:[ \t]*(<[^<>\s]{1,250}>)[ \t]*$/im.exec(headers.toString('latin1'))
  return m?.[1]
}

/** The notice as sent, unsigned: headers, the human part, the report and the original's headers. */
export function buildBounceNotice(
  facts: BounceFacts,
  identity: NoticeIdentity,
  opts: { id: string; to: string; now?: Date },
): Buffer {
  const now = opts.now ?? new Date()
  const boundary = `atmos-dsn-${randomBytes(12).toString('hex')}`
  const recipient = oneLine(facts.recipient, 320)
  const diagnostic = oneLine(facts.diagnostic, 900) || 'no reply'
  const headers = returnedHeaders(facts.message.body)
  const inReplyTo = originalMessageId(headers)
  const ascii = /^[\x20-\x7e]*$/.test(facts.recipient)

  const human = [
    `This is the mail relay of ${identity.poolDomain}.`,
    '',
    facts.expired
      ? `Your message could not be delivered to <${recipient}>: it was not accepted before the relay stopped trying. The last answer:`
      : `Your message could not be delivered to <${recipient}>. The reason:`,
    '',
    `    ${diagnostic}`,
    '',
    `The message arrived at ${rfc5322Date(facts.message.receivedAt)}; the last attempt was at ${rfc5322Date(facts.lastAttemptAt)}.`,
    'No further attempts will be made. The headers of your message are attached.',
    'This notice was sent automatically: replies to it are not read.',
  ]
  const perMessage = [
    `Reporting-MTA: dns; ${oneLine(identity.reportingMta, 255)}`,
    `Arrival-Date: ${rfc5322Date(facts.message.receivedAt)}`,
  ]
  const perRecipient = [
    // RFC 6533: an internationalised address is reported as utf-8.
    ascii
      ? `Final-Recipient: rfc822; ${recipient}`
      : `Final-Recipient: utf-8; ${facts.recipient.replace(/[\r\n]/g, '')}`,
    'Action: failed',
    `Status: ${/^5\.\d{1,3}\.\d{1,3}$/.test(facts.status) ? facts.status : '5.0.0'}`,
    ...(facts.remoteMta ? [`Remote-MTA: dns; ${oneLine(facts.remoteMta, 255)}`] : []),
    `Diagnostic-Code: smtp; ${diagnostic}`,
    `Last-Attempt-Date: ${rfc5322Date(facts.lastAttemptAt)}`,
  ]
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${identity.poolDomain}>`,
    `To: <${opts.to}>`,
    `Subject: Undelivered mail: ${oneLine(recipient, 200)}`,
    `Date: ${rfc5322Date(now)}`,
    `Message-ID: <${opts.id}@${identity.poolDomain}>`,
    ...(inReplyTo ? [`In-Reply-To: ${inReplyTo}`, `References: ${inReplyTo}`] : []),
    // RFC 3834: automatic, and no vacation answers to it.
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="${boundary}"`,
  ]
  const eightBit = headers.some((b) => b > 0x7e) || !ascii
  return Buffer.concat([
    Buffer.from(
      `${head.join('\r\n')}\r\n\r\n` +
        `--${boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n${human.join('\r\n')}\r\n\r\n` +
        `--${boundary}\r\nContent-Type: message/delivery-status\r\n\r\n${perMessage.join('\r\n')}\r\n\r\n${perRecipient.join('\r\n')}\r\n\r\n` +
        `--${boundary}\r\nContent-Type: text/rfc822-headers${eightBit ? '\r\nContent-Transfer-Encoding: 8bit' : ''}\r\n\r\n`,
      'utf8',
    ),
    headers,
    Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1'),
  ])
}

/** Builds and signs bounce notices, ready to be spooled in the transaction that records the bounce. */
export class BounceNotices {
  private readonly keys: () => SigningKeys
  private readonly identity: NoticeIdentity

  /** `keys` is asked at the first notice: a delivery process that never sends one needs no KEK. */
  constructor(opts: { keys: () => SigningKeys; identity: NoticeIdentity }) {
    this.keys = opts.keys
    this.identity = opts.identity
  }

  /** The signed notice for a bounce, or undefined when the sender is not one to notify. Throws without a pool key. */
  async prepare(facts: BounceFacts): Promise<PoolMessage | undefined> {
    // The member named where replies and notices for the domain should go (often a mailbox
    // people read, unlike noreply@ senders): that address first, else the envelope sender.
    const to =
      (facts.message.forwardTo ? noticeRecipient(facts.message.forwardTo) : undefined) ??
      noticeRecipient(facts.message.envelopeFrom)
    if (!to) return undefined
    const id = randomUUID()
    const unsigned = buildBounceNotice(facts, this.identity, { id, to })
    const body = await signAsPool(this.keys(), this.identity.poolDomain, unsigned, 'bounce notices')
    return {
      id,
      envelopeFrom: '',
      returnPath: '',
      messageIdHeader: `<${id}@${this.identity.poolDomain}>`,
      body,
      to,
      lifetimeMs: NOTICE_LIFETIME_MS,
    }
  }
}
