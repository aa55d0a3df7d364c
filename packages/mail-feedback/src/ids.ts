import { createHmac, timingSafeEqual } from 'node:crypto'

// The identifiers the relay writes into every message it sends, and that fbl-ingest reads
// back out of bounces and complaint reports. They live in one module so the writer and the
// reader cannot drift apart.
//
// The relay spools one message per recipient, so a message id names both the member and
// the recipient: a redacted ARF report that keeps only the original headers still
// attributes fully. The token carries an HMAC so nobody can forge a bounce that suppresses
// addresses of a member they do not control; local parts stay lower-case because some MTAs
// fold case on the return path.

/** The opaque per-message reference header (signed by both DKIM signatures). */
export const REFERENCE_HEADER = 'X-Atmos-Ref'
/** The member's DID, for people and for ARF reports that keep headers. */
export const MEMBER_DID_HEADER = 'X-Atmos-Member-Did'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const TOKEN = /^([0-9a-f]{32})\.([0-9a-f]{12})$/
const MAC_HEX = 12

export interface TokenKey {
  /** Secret shared by relay and fbl-ingest (config `pool.tokenSecret`). */
  secret: string
}

function mac(key: TokenKey, hex: string): string {
  return createHmac('sha256', key.secret).update(`atmos-ref:${hex}`).digest('hex').slice(0, MAC_HEX)
}

/** `<uuid hex>.<mac>`: what both the VERP local part and the reference header carry. */
export function messageToken(key: TokenKey, messageId: string): string {
  const id = messageId.toLowerCase()
  if (!UUID.test(id)) throw new Error(`message id must be a UUID, got ${JSON.stringify(messageId)}`)
  const hex = id.replaceAll('-', '')
  return `${hex}.${mac(key, hex)}`
}

/** The message id a token names, or null when it is malformed or its MAC does not match. */
export function readMessageToken(key: TokenKey, token: string): string | null {
  const m = TOKEN.exec(token.trim().toLowerCase())
  if (!m) return null
  const [, hex, given] = m as unknown as [string, string, string]
  const want = mac(key, hex)
  if (!timingSafeEqual(Buffer.from(want), Buffer.from(given))) return null
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

export interface VerpConfig extends TokenKey {
  /** The pool's bounce domain, e.g. `bounces.atmos.email`. */
  bounceDomain: string
  /** Local-part prefix before `+`, e.g. `b`. */
  prefix: string
}

/** The envelope sender for one spooled message: `b+<token>@<bounce domain>`. */
export function verpAddress(cfg: VerpConfig, messageId: string): string {
  return `${cfg.prefix}+${messageToken(cfg, messageId)}@${cfg.bounceDomain.toLowerCase()}`
}

/**
 * The message id a VERP address names, or null when the address is not ours or the
 * token is forged. Case-insensitive: some MTAs fold the case of the return path.
 */
export function readVerpAddress(cfg: VerpConfig, address: string): string | null {
  const a = address.trim().replace(/^<|>$/g, '').toLowerCase()
  const at = a.lastIndexOf('@')
  if (at < 0 || a.slice(at + 1) !== cfg.bounceDomain.toLowerCase()) return null
  const local = a.slice(0, at)
  const prefix = `${cfg.prefix.toLowerCase()}+`
  if (!local.startsWith(prefix)) return null
  return readMessageToken(cfg, local.slice(prefix.length))
}

/** The pool's constant Gmail SenderId: 5–15 characters, letters, digits and dashes. */
export const POOL_ID = /^[A-Za-z0-9-]{5,15}$/

/**
 * Gmail's `Feedback-ID: a:b:c:SenderId`. Gmail Postmaster Tools reports spam rates per
 * value of each of the first three fields, so the member id gets a field of its own:
 * `<stream>:m<memberId>:atmos:<poolId>`.
 */
export function feedbackId(opts: { memberId: number; poolId: string; stream?: string }): string {
  if (!POOL_ID.test(opts.poolId)) throw new Error('pool id must be 5–15 letters, digits or dashes')
  const stream = opts.stream ?? 'tx'
  if (!/^[a-z0-9-]{1,20}$/.test(stream)) throw new Error('stream must be lower-case letters, digits or dashes')
  return `${stream}:m${opts.memberId}:atmos:${opts.poolId}`
}

/** The member id in a Feedback-ID we wrote, or null for anyone else's. */
export function readFeedbackId(value: string, poolId: string): number | null {
  const parts = value.trim().split(':')
  if (parts.length !== 4 || parts[2] !== 'atmos' || parts[3] !== poolId) return null
  const m = /^m([1-9][0-9]{0,15})$/.exec(parts[1] ?? '')
  return m ? Number(m[1]) : null
}
