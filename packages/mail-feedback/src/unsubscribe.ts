import { createHmac, timingSafeEqual } from 'node:crypto'
import type { TokenKey } from './ids.ts'

// One-click unsubscribe (RFC 8058) and message categories. The relay writes the token into
// List-Unsubscribe; the admin's public page reads it back. The token names the member, the
// recipient and the message, and carries an HMAC under a key derived from the pool's token
// secret, so the page verifies it without reading the database and nobody can unsubscribe
// an address from a member's mail without holding a message sent to it. The recipient is in
// the token (rather than looked up through the message) so that it still works after the
// spool row's body is purged, and the message id lets a later report say which send it was.

/** The header a member names a message's category with (removed before sending). */
export const CATEGORY_HEADER = 'X-Atmos-Category'

/** Categories that never carry an unsubscribe: a recipient must not be able to stop his own login mail. */
export const TRANSACTIONAL_CATEGORIES = ['login-link', 'password-reset', 'mfa-otp', 'verification'] as const

const CATEGORY = /^[a-z0-9-]{1,40}$/

/** A category as given (trimmed, lower-cased), or null when it is not a short token. */
export function normalizeCategory(value: string): string | null {
  const v = value.trim().toLowerCase()
  return CATEGORY.test(v) ? v : null
}

export type UnsubscribeSubject = {
  memberId: number
  /** The recipient as spooled. */
  recipient: string
  /** messages.id of the recipient's copy. */
  messageId: string
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// Four dot-separated parts, each of a class without dots: no ambiguity, no backtracking.
const TOKEN = /^([1-9][0-9]{0,15})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{2,512})\.([A-Za-z0-9_-]{22})$/

function mac(key: TokenKey, payload: string): string {
  // A label of its own: an unsubscribe MAC can never pass for a VERP one, nor the reverse.
  return createHmac('sha256', key.secret)
    .update(`atmos-unsub:${payload}`)
    .digest()
    .subarray(0, 16)
    .toString('base64url')
}

/** `<member>.<message hex>.<recipient base64url>.<mac>`: URL- and local-part-safe. */
export function unsubscribeToken(key: TokenKey, s: UnsubscribeSubject): string {
  const id = s.messageId.toLowerCase()
  if (!UUID.test(id)) throw new Error('message id must be a UUID')
  if (!Number.isSafeInteger(s.memberId) || s.memberId < 1) throw new Error('member id must be a positive integer')
  const payload = `${s.memberId}.${id.replaceAll('-', '')}.${Buffer.from(s.recipient, 'utf8').toString('base64url')}`
  return `${payload}.${mac(key, payload)}`
}

/** What a token names, or null when it is malformed or its MAC does not match. */
export function readUnsubscribeToken(key: TokenKey, token: string): UnsubscribeSubject | null {
  if (token.length > 700) return null
  const m = TOKEN.exec(token)
  if (!m) return null
  const [, member, hex, rcpt, given] = m as unknown as [string, string, string, string, string]
  const want = mac(key, `${member}.${hex}.${rcpt}`)
  if (!timingSafeEqual(Buffer.from(want), Buffer.from(given))) return null
  const recipient = Buffer.from(rcpt, 'base64url').toString('utf8')
  if (!recipient.includes('@')) return null
  return {
    memberId: Number(member),
    recipient,
    messageId: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
  }
}
