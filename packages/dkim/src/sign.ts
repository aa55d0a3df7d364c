/// <reference path="./signer.d.ts" />
import type { KeyObject } from 'node:crypto'
import type { DKIMSignOptions } from 'mailauth'
import { DkimSigner } from 'mailauth/lib/dkim/dkim-signer.js'
import { writeToStream } from 'mailauth/lib/tools.js'

/**
 * The header fields both signatures cover. mailauth's default list leaves out
 * Feedback-ID and List-Unsubscribe-Post, and a complaint feed keyed on them needs them
 * signed; the reference header must be signed so that nobody can re-attribute a message.
 */
export const SIGNED_HEADERS = [
  'From',
  'To',
  'Cc',
  'Subject',
  'Date',
  'Message-ID',
  'Reply-To',
  'Feedback-ID',
  'X-Atmos-Member-Did',
  'X-Atmos-Ref',
  'List-Unsubscribe',
  'List-Unsubscribe-Post',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
]

export type SigningKey = {
  /** `d=` */
  domain: string
  /** `s=` */
  selector: string
  /**
   * Unsealed and parsed once: lives only in this process' memory, and never prints (a
   * KeyObject's inspection shows no key material). Parsed, not PEM, because OpenSSL keeps
   * the key's precomputed values on it between signatures: signing with a PEM string parses
   * and precomputes again every time, three times the cost of the signature itself.
   */
  privateKey: KeyObject
}

/**
 * mailauth signs the From fields a message has, but cannot over-sign: name `from` once
 * more in h= than there are From fields, so that a From added after signing (which some
 * clients would show) breaks the signature. Verifiers treat that extra name as an empty
 * field (RFC 6376 5.4.2), so it adds nothing to the hash; only h= changes. mailauth
 * builds h= from each signed field's `casedKey`, so the topmost From (signed last)
 * carries the extra name.
 */
class OverSigningDkimSigner extends DkimSigner {
  override async messageHeaders(headers: Parameters<DkimSigner['messageHeaders']>[0]): Promise<void> {
    await super.messageHeaders(headers)
    const topFrom = headers.parsed.find((h) => h.key === 'from')
    if (topFrom?.casedKey) topFrom.casedKey = `${topFrom.casedKey}:${topFrom.casedKey}`
  }
}

export class SigningError extends Error {
  override name = 'SigningError'
}

/**
 * Signs one message with every key in one pass over its body (one body hash serves both
 * signatures: same canonicalization and hash) and returns it with the DKIM-Signature
 * fields on top, in the order of `keys`.
 */
export async function signMessage(message: Buffer, keys: SigningKey[], signTime = new Date()): Promise<Buffer> {
  const signatureData: DKIMSignOptions[] = keys.map((k) => ({
    signingDomain: k.domain,
    selector: k.selector,
    // mailauth's types say PEM; our patch of it (patches/) takes the KeyObject as it is.
    privateKey: k.privateKey as unknown as string,
    algorithm: 'rsa-sha256',
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
