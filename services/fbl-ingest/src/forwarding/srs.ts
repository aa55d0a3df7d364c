import { createHmac, timingSafeEqual } from 'node:crypto'

// Sender Rewriting Scheme for the replies the pool forwards to members' forward-to mailboxes.
// A forward goes out from the pool's IPs, so the original envelope sender's SPF would fail at
// the forward-to provider; the envelope sender becomes an address at the pool's bounce domain
// that names the original sender, in the usual SRS0 shape:
//
//   srs0=<hash>=<tt>=<original domain>=<original local part>@<bounce domain>
//
// <tt> is the day it was made (base32, days since the epoch modulo 1024) and <hash> an HMAC
// over the rest, so only addresses the pool made, and made recently, are accepted at RCPT:
// the bounce domain is no open door for anyone to file bounces. Unlike a classic SRS
// forwarder, the pool never sends a bounce on to the original sender (that would make it a
// backscatter source): it only verifies and records. Everything is lower-case, because some
// MTAs fold the case of the return path; the hash is base32 for the same reason. Only the pool
// reads these addresses, so the hash need not match other SRS implementations'.

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'
const DAY_MS = 86_400_000
/** Two base32 characters: the timestamp wraps every 1024 days. */
const TT_RANGE = 1024
const HASH_CHARS = 8
/** The SRS local part may be longer than RFC 5321's 64 octets (every SRS forwarder's is); not without bound. */
const MAX_LOCAL = 200

/** Original local parts the pool rewrites: a dot-atom without the relay tricks (%, !) or quoting. */
const ORIGINAL_LOCAL = /^[a-z0-9#$&'*+/=?^_`{|}~.-]{1,64}$/
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

/** A host name of two labels or more, checked label by label (no nested quantifier over hostile input). */
export function isHostName(domain: string): boolean {
  if (domain.length < 3 || domain.length > 253) return false
  const labels = domain.split('.')
  return labels.length >= 2 && labels.every((l) => LABEL.test(l))
}
/** srs0=hash=tt=domain=local; the local part may itself hold '=', the domain cannot. */
const SRS_LOCAL = /^srs0=([a-z2-7]{8})=([a-z2-7]{2})=([a-z0-9.-]{1,253})=(.{1,64})$/

export type SrsKey = {
  /** The pool's token secret (the one VERP addresses use); the hash has a label of its own. */
  secret: string
  bounceDomain: string
}

function base32(bytes: Buffer, chars: number): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5 && out.length < chars) {
      out += BASE32[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
    if (out.length >= chars) break
  }
  return out
}

function timestamp(now: number): string {
  const day = Math.floor(now / DAY_MS) % TT_RANGE
  return BASE32[day >> 5]! + BASE32[day & 31]!
}

function hash(key: SrsKey, tt: string, domain: string, local: string): string {
  return base32(createHmac('sha256', key.secret).update(`atmos-srs:${tt}=${domain}=${local}`).digest(), HASH_CHARS)
}

/**
 * The SRS address for an original envelope sender, or null when it is not one to rewrite:
 * the null sender (a bounce is forwarded with a null sender too), or an address of a shape
 * the pool does not carry (quoted, with % or !, over-long), which is then forwarded with a
 * null sender rather than with an address nobody can answer.
 */
export function srsAddress(key: SrsKey, originalSender: string, now = Date.now()): string | null {
  const sender = originalSender.trim().toLowerCase()
  const at = sender.lastIndexOf('@')
  if (at <= 0) return null
  const local = sender.slice(0, at)
  const domain = sender.slice(at + 1).replace(/\.$/, '')
  if (!ORIGINAL_LOCAL.test(local) || !isHostName(domain)) return null
  const tt = timestamp(now)
  const srsLocal = `srs0=${hash(key, tt, domain, local)}=${tt}=${domain}=${local}`
  if (srsLocal.length > MAX_LOCAL) return null
  return `${srsLocal}@${key.bounceDomain.toLowerCase()}`
}

export type SrsRead =
  | { ok: true; originalSender: string; ageDays: number }
  | { ok: false; reason: 'not_srs' | 'bad_hash' | 'expired' }

/** Whether an address looks like one of ours at all (cheap, before any HMAC). */
export function isSrsAddress(key: SrsKey, address: string): boolean {
  const a = address.trim().toLowerCase()
  return a.startsWith('srs0=') && a.endsWith(`@${key.bounceDomain.toLowerCase()}`)
}

/**
 * Reads an SRS address back: the original sender when its hash verifies and it is at most
 * `maxAgeDays` old. Case-insensitive; a future timestamp reads as very old.
 */
export function readSrsAddress(key: SrsKey, address: string, maxAgeDays: number, now = Date.now()): SrsRead {
  const a = address.trim().replace(/^<|>$/g, '').toLowerCase()
  const at = a.lastIndexOf('@')
  if (at <= 0 || a.slice(at + 1) !== key.bounceDomain.toLowerCase()) return { ok: false, reason: 'not_srs' }
  const m = SRS_LOCAL.exec(a.slice(0, at))
  if (!m) return { ok: false, reason: 'not_srs' }
  const [, given, tt, domain, local] = m as unknown as [string, string, string, string, string]
  if (!ORIGINAL_LOCAL.test(local) || !isHostName(domain)) return { ok: false, reason: 'not_srs' }
  const want = hash(key, tt, domain, local)
  if (!timingSafeEqual(Buffer.from(want), Buffer.from(given))) return { ok: false, reason: 'bad_hash' }
  const made = BASE32.indexOf(tt[0]!) * 32 + BASE32.indexOf(tt[1]!)
  const today = Math.floor(now / DAY_MS) % TT_RANGE
  const ageDays = (today - made + TT_RANGE) % TT_RANGE
  if (ageDays > maxAgeDays) return { ok: false, reason: 'expired' }
  return { ok: true, originalSender: `${local}@${domain}`, ageDays }
}
