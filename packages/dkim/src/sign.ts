/// <reference path="./signer.d.ts" />
import type { KeyObject } from 'node:crypto'
import type { DKIMSignOptions } from 'mailauth'
import { DkimSigner } from 'mailauth/lib/dkim/dkim-signer.js'
import { writeToStream } from 'mailauth/lib/tools.js'

/**
 * Header fields that matter to attribution or to the reader. Each is over-signed: named once
 * more in h= than the message holds it (RFC 6376 5.4.2), absent ones included, so that a copy
 * added after signing (a second From, a forged X-Atmos-Member-Did or Feedback-ID shown or
 * read first) breaks every signature. mailauth's default list leaves out Feedback-ID and
 * List-Unsubscribe-Post; the reference header is signed so that nobody can re-attribute a
 * message.
 */
export const OVERSIGNED_HEADERS = [
  'From',
  'Sender',
  'Reply-To',
  'To',
  'Cc',
  'Subject',
  'Date',
  'Message-ID',
  'Feedback-ID',
  'X-Atmos-Member-Did',
  'X-Atmos-Ref',
  'List-Unsubscribe',
  'List-Unsubscribe-Post',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
]

/**
 * The header fields every signature covers: the over-signed ones, and the relay's own Received
 * (signed as many times as the message holds it, not over-signed: every later hop adds one).
 */
export const SIGNED_HEADERS = [...OVERSIGNED_HEADERS, 'Received']

export type SigningKey = {
  /** `d=` */
  domain: string
  /** `s=` */
  selector: string
  /** `a=`: follows the key's type. */
  algorithm: 'rsa-sha256' | 'ed25519-sha256'
  /**
   * Unsealed and parsed once: lives only in this process' memory, and never prints (a
   * KeyObject's inspection shows no key material). Parsed, not PEM, because OpenSSL keeps
   * the key's precomputed values on it between signatures: signing with a PEM string parses
   * and precomputes again every time, three times the cost of the signature itself.
   */
  privateKey: KeyObject
}

/**
 * mailauth signs the fields a message has, but cannot over-sign. h= is the signed fields'
 * `casedKey`s joined in signing order (bottom-up, so the topmost signed field comes last), and
 * only their lines are hashed: so the topmost signed field's casedKey gets every over-signed
 * name appended once more. Those names come after every real instance in h=, so a verifier
 * finds no unused field for them and hashes nothing (RFC 6376 5.4.2); a field of that name
 * added above the message later takes their place, and the signature breaks.
 */
class OverSigningDkimSigner extends DkimSigner {
  override async messageHeaders(headers: Parameters<DkimSigner['messageHeaders']>[0]): Promise<void> {
    await super.messageHeaders(headers)
    const signed = new Set(SIGNED_HEADERS.map((name) => name.toLowerCase()))
    const top = headers.parsed.find((h) => h.key !== null && signed.has(h.key))
    if (top?.casedKey) top.casedKey = [top.casedKey, ...OVERSIGNED_HEADERS].join(':')
  }
}

export class SigningError extends Error {
  override name = 'SigningError'
}

/**
 * Signs one message with every key in one pass over its body (one body hash serves every
 * signature, RSA and Ed25519 alike: same canonicalization and hash) and returns it with the DKIM-Signature
 * fields on top, in the order of `keys`.
 */
export async function signMessage(message: Buffer, keys: SigningKey[], signTime = new Date()): Promise<Buffer> {
  const signatureData: DKIMSignOptions[] = keys.map((k) => ({
    signingDomain: k.domain,
    selector: k.selector,
    // mailauth's types say PEM; our patch of it (patches/) takes the KeyObject as it is.
    privateKey: k.privateKey as unknown as string,
    algorithm: k.algorithm,
    canonicalization: 'relaxed/relaxed',
    headerList: SIGNED_HEADERS,
  }))
  const signer = new OverSigningDkimSigner({ signatureData, signTime, strict: true })
  await writeToStream(signer, message)
  if (signer.errors.length || signer.signatureHeaders.length !== keys.length) {
    // The error names the domain and selector only, never key material.
    const first = signer.errors[0]
    throw new SigningError(
      `DKIM signing failed${first ? ` for d=${first.signingDomain} s=${first.selector}: ${first.err.message}` : ''}`,
    )
  }
  return Buffer.concat([Buffer.from(`${signer.signatureHeaders.join('\r\n')}\r\n`), message])
}
