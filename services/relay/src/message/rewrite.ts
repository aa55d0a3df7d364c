import { randomUUID } from 'node:crypto'
import { feedbackId, MEMBER_DID_HEADER, REFERENCE_HEADER } from '@atmos/mail-feedback'
import { addressDomain, isSameOrSubdomain, singleMailbox } from './addresses.ts'
import { fieldValue, type HeaderField, makeField, type ParsedMessage, serializeMessage } from './headers.ts'

// What the relay changes in a member's message before it is signed. The body is never
// touched; header fields the relay writes itself are removed from what the member sent
// (never trusted), Bcc is dropped, and Message-ID and Date are added when missing.

/** Fields a member may not supply: ours, or ones that must not travel (Bcc, Return-Path). */
const REMOVED = new Set([
  'bcc',
  'return-path',
  'feedback-id',
  REFERENCE_HEADER.toLowerCase(),
  MEMBER_DID_HEADER.toLowerCase(),
])

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

export type PreparedMessage = {
  /** The domain of the header From. */
  fromDomain: string
  messageIdHeader: string
  /** The message for one recipient, unsigned: ours on top, then the member's fields, then the body. */
  forRecipient(reference: string): Buffer
}

/** Checks the header From (and Sender) against the member's domain and rewrites the header section. */
export function prepareMessage(parsed: ParsedMessage, sender: SenderIdentity, now = new Date()): PreparedMessage {
  const froms = parsed.fields.filter((f) => f.key === 'from')
  if (froms.length !== 1) {
    throw new HeaderPolicyError(550, `5.6.0 a message needs exactly one From header, found ${froms.length}`)
  }
  let fromDomain = ''
  for (const field of parsed.fields.filter((f) => f.key === 'from' || f.key === 'sender')) {
    const mailbox = singleMailbox(fieldValue(field))
    if (!mailbox) throw new HeaderPolicyError(550, `5.6.0 the ${field.name} header must name exactly one address`)
    const domain = addressDomain(mailbox)
    if (!isSameOrSubdomain(domain, sender.domain)) {
      throw new HeaderPolicyError(
        550,
        `5.7.1 ${field.name} must be an address at ${sender.domain} or a subdomain of it, not ${domain || 'this one'}`,
      )
    }
    if (field.key === 'from') fromDomain = domain
  }

  const kept = parsed.fields.filter((f) => !REMOVED.has(f.key))
  const added: HeaderField[] = []
  let messageIdHeader = kept.find((f) => f.key === 'message-id')
  if (!messageIdHeader) {
    messageIdHeader = makeField('Message-ID', `<${randomUUID()}@${fromDomain}>`)
    added.push(messageIdHeader)
  }
  if (!kept.some((f) => f.key === 'date')) added.push(makeField('Date', now.toUTCString().replace('GMT', '+0000')))
  const common = [
    makeField('Feedback-ID', feedbackId({ memberId: sender.memberId, poolId: sender.poolId })),
    makeField(MEMBER_DID_HEADER, sender.did),
  ]
  return {
    fromDomain,
    messageIdHeader: fieldValue(messageIdHeader),
    forRecipient: (reference) =>
      serializeMessage([...common, makeField(REFERENCE_HEADER, reference), ...added, ...kept], parsed.body, parsed.eol),
  }
}
