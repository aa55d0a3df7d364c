import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

// Standard Webhooks (https://www.standardwebhooks.com): the secret is `whsec_` and the
// base64 of its bytes; each signature is `v1,` and the base64 HMAC-SHA256, under the secret's
// bytes, of `<webhook-id>.<webhook-timestamp>.<body>`. Several signatures are separated by
// spaces: during a rotation both the new and the previous secret sign, so a receiver that
// has either verifies.

const PREFIX = 'whsec_'
export const SECRET_BYTES = 32

/** A fresh endpoint secret's bytes. */
export function newSecret(): Buffer {
  return randomBytes(SECRET_BYTES)
}

/** The secret as a member copies it into a receiver. */
export function formatSecret(secret: Buffer): string {
  return `${PREFIX}${secret.toString('base64')}`
}

/** The bytes of a `whsec_` secret; throws on anything else. */
export function parseSecret(text: string): Buffer {
  if (!text.startsWith(PREFIX)) throw new Error('a webhook secret starts with whsec_')
  const b64 = text.slice(PREFIX.length)
  const bytes = Buffer.from(b64, 'base64')
  if (bytes.length < 24 || bytes.toString('base64') !== b64) throw new Error('not a webhook secret')
  return bytes
}

/** One `v1,<base64>` signature. */
export function sign(secret: Buffer, id: string, timestamp: number, body: string): string {
  return `v1,${createHmac('sha256', secret).update(`${id}.${timestamp}.${body}`).digest('base64')}`
}

/** The `webhook-signature` header: one signature per secret, space separated. */
export function signatureHeader(secrets: Buffer[], id: string, timestamp: number, body: string): string {
  return secrets.map((s) => sign(s, id, timestamp, body)).join(' ')
}

/**
 * A receiver's check (for our tests and the README's example): one of the header's `v1`
 * signatures matches, and the timestamp is within `toleranceSec` of now (replays refused).
 */
export function verifySignature(
  secret: Buffer,
  headers: { id: string; timestamp: string; signature: string },
  body: string,
  opts: { now?: number; toleranceSec?: number } = {},
): boolean {
  const ts = Number(headers.timestamp)
  const now = Math.floor((opts.now ?? Date.now()) / 1000)
  if (!Number.isInteger(ts) || Math.abs(now - ts) > (opts.toleranceSec ?? 300)) return false
  const want = Buffer.from(sign(secret, headers.id, ts, body))
  return headers.signature.split(' ').some((sig) => {
    const got = Buffer.from(sig)
    return got.length === want.length && timingSafeEqual(got, want)
  })
}
