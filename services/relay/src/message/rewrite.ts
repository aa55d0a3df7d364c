import { createHash, randomUUID } from 'node:crypto'
import { feedbackId, MEMBER_DID_HEADER, normalizeCategory, REFERENCE_HEADER } from '@atmos/mail-feedback'
import { fieldValue, type HeaderField, makeField, type ParsedMessage, serializeMessage } from './headers.ts'
import { canonicalBody } from './lines.ts'
import { checkMailbox } from './mailbox.ts'
import { type ReceivedTrace, receivedField, rfc5322Date } from './received.ts'

// What the relay changes in a member's message before it is signed. The body's content is
// never touched (its bare LFs become CRLF: see lines.ts); header fields the relay writes
// itself are removed from what the member sent (never trusted), Bcc is dropped, and
// Message-ID and Date are added when missing.

/**
 * Fields a member may not supply: ours; ones that must not travel (Bcc, Resent-Bcc, which
 * would reach every recipient, Return-Path); and verdicts or signatures only a receiving or
 * signing system writes (a member's DKIM-Signature, ARC set or Authentication-Results would
 * vouch for what it never checked).
 */
const REMOVED = new Set([
  'bcc',
  'resent-bcc',
  'return-path',
  'feedback-id',
  'dkim-signature',
  'authentication-results',
  'received-spf',
  REFERENCE_HEADER.toLowerCase(),
  MEMBER_DID_HEADER.toLowerCase(),
])

/** Removed by prefix: every ARC field (RFC 8617), and every X-Atmos- field, ours or not. */
function isRemoved(key: string): boolean {
  return REMOVED.has(key) || key.startsWith('arc-') || key.startsWith('x-atmos-')
}

/** Fields naming who a message is from: each must be one mailbox at the member's domain. */
const ORIGINATOR_FIELDS = new Set(['from', 'sender', 'resent-from', 'resent-sender'])

export class HeaderPolicyError extends Error {
  override name = 'HeaderPolicyError'
  readonly code: number
  constructor(code: number, message: string) {
    super(message)
    this.code = code
  }
}

export type SenderIdentity = {
  memberId: number
  did: string
  /** The member's domain: From (and Sender) must be it or a subdomain. */
  domain: string
  /** Gmail SenderId of the pool. */
  poolId: string
}

/** What List-Unsubscribe offers one recipient (RFC 2369, RFC 8058). */
export type UnsubscribeLinks = { https: string; mailto?: string }

export type PreparedMessage = {
  /** The domain of the header From. */
  fromDomain: string
  messageIdHeader: string
  /** The member's X-Atmos-Category, normalized; null when absent. */
  category: string | null
  /** SHA-256 (base64url) of the body as it goes out: the same for every recipient's copy. */
  bodyHash(): string
  /**
   * The message for one recipient, unsigned: our Received (when given) and fields on top,
   * then the member's fields, then the body. With `unsubscribe`, our List-Unsubscribe and
   * List-Unsubscribe-Post replace any the member wrote (two of either would leave a receiver
   * to pick one, and only ours suppresses at the pool).
   */
  forRecipient(reference: string, received?: ReceivedTrace, unsubscribe?: UnsubscribeLinks): Buffer
}

/** Folded before the mailto: a long recipient makes a long token, and lines should stay short. */
function listUnsubscribe(links: UnsubscribeLinks, eol: string): HeaderField {
  const https = makeField('List-Unsubscribe', `<${links.https}>`)
  if (!links.mailto) return https
  const mailto = `<mailto:${links.mailto}?subject=unsubscribe>`
  if (/[\r\n]/.test(mailto)) throw new Error('mailto address contains a line break')
  return { ...https, raw: Buffer.concat([https.raw, Buffer.from(`,${eol} ${mailto}`, 'utf8')]) }
}

const LIST_UNSUBSCRIBE = new Set(['list-unsubscribe', 'list-unsubscribe-post'])

/** Checks the header From (and Sender) against the member's domain and rewrites the header section. */
export function prepareMessage(parsed: ParsedMessage, sender: SenderIdentity, now = new Date()): PreparedMessage {
  const froms = parsed.fields.filter((f) => f.key === 'from')
  if (froms.length !== 1) {
    throw new HeaderPolicyError(550, `5.6.0 a message needs exactly one From header, found ${froms.length}`)
  }
  const senders = parsed.fields.filter((f) => f.key === 'sender').length
  if (senders > 1) throw new HeaderPolicyError(550, `5.6.0 a message may have one Sender header, found ${senders}`)
  let fromDomain = ''
  for (const field of parsed.fields.filter((f) => ORIGINATOR_FIELDS.has(f.key))) {
    const checked = checkMailbox(fieldValue(field), field.name, sender.domain)
    if (!checked.ok) throw new HeaderPolicyError(550, `${checked.status} ${checked.reason}`)
    if (field.key === 'from') fromDomain = checked.domain
  }

  // Refused rather than ignored: a misspelt marketing category read as absent would send
  // bulk mail without the unsubscribe the member meant it to carry.
  const categories = parsed.fields.filter((f) => f.key === 'x-atmos-category')
  if (categories.length > 1) {
    throw new HeaderPolicyError(550, `5.6.0 a message may have one X-Atmos-Category header, found ${categories.length}`)
  }
  let category: string | null = null
  if (categories[0]) {
    category = normalizeCategory(fieldValue(categories[0]))
    if (!category) {
      throw new HeaderPolicyError(550, '5.6.0 X-Atmos-Category must be 1 to 40 lower-case letters, digits or dashes')
    }
  }

  const kept = parsed.fields.filter((f) => !isRemoved(f.key))
  const added: HeaderField[] = []
  let messageIdHeader = kept.find((f) => f.key === 'message-id')
  if (!messageIdHeader) {
    messageIdHeader = makeField('Message-ID', `<${randomUUID()}@${fromDomain}>`)
    added.push(messageIdHeader)
  }
  if (!kept.some((f) => f.key === 'date')) added.push(makeField('Date', rfc5322Date(now)))
  const common = [
    makeField('Feedback-ID', feedbackId({ memberId: sender.memberId, poolId: sender.poolId })),
    makeField(MEMBER_DID_HEADER, sender.did),
  ]
  const body = canonicalBody(parsed.body)
  return {
    fromDomain,
    messageIdHeader: fieldValue(messageIdHeader),
    category,
    bodyHash: () => createHash('sha256').update(body).digest('base64url'),
    forRecipient: (reference, received, unsubscribe) =>
      serializeMessage(
        [
          ...(received ? [receivedField(received)] : []),
          ...common,
          makeField(REFERENCE_HEADER, reference),
          ...(unsubscribe
            ? [
                listUnsubscribe(unsubscribe, parsed.eol),
                makeField('List-Unsubscribe-Post', 'List-Unsubscribe=One-Click'),
              ]
            : []),
          ...added,
          ...(unsubscribe ? kept.filter((f) => !LIST_UNSUBSCRIBE.has(f.key)) : kept),
        ],
        body,
        parsed.eol,
      ),
  }
}
