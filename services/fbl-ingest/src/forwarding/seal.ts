import type { SigningKey } from '@atmos/dkim'
import { withTimeout } from '@atmos/runtime'
import { authenticate } from 'mailauth'
import type { ReceiptContext } from '../smtp/authenticate.ts'

// A reply to a member's domain leaves the pool from the pool's IPs, so at the forward-to
// provider its SPF fails and, if anything on the way changed it, its DKIM too. The pool
// records what it found at receipt (SPF for the client that handed it over, the original
// DKIM, DMARC, any earlier ARC chain) and seals that record with its own key (RFC 8617): a
// provider that trusts the pool's seal can read the original verdict. mailauth checks and
// seals in one pass.

/** What the client said at receipt (the seal records SPF for it) and how to check: as at receipt. */
export type SealContext = ReceiptContext

export type Sealed = {
  /** The header fields to put on top: ARC set, Authentication-Results, Received-SPF. */
  headers: string
  /** The verdicts at receipt, for the log and the record. */
  dmarc: string
  arc: string
  sealed: boolean
  sealError?: string
}

/** Checks and ARC-seals `message` (which must already hold our Received line); throws past the timeout. */
export async function sealForward(message: Buffer, key: SigningKey, ctx: SealContext): Promise<Sealed> {
  const result = await withTimeout(
    authenticate(message, {
      ip: ctx.ip,
      helo: ctx.helo,
      sender: ctx.mailFrom,
      mta: ctx.mta,
      resolver: ctx.resolver,
      disableBimi: true,
      seal: {
        signingDomain: key.domain,
        selector: key.selector,
        // mailauth's types say PEM; our patch of it (patches/) takes the parsed KeyObject.
        privateKey: key.privateKey as unknown as string,
      },
    }),
    ctx.timeoutMs,
    'ARC sealing',
  )
  const arc = result.arc || undefined
  const sealErrors = (arc as { sealErrors?: { err?: Error }[] } | undefined)?.sealErrors
  return {
    headers: result.headers,
    dmarc: result.dmarc ? result.dmarc.status.result : (result.dmarcSkipReason ?? 'none'),
    arc: arc?.status?.result ?? 'none',
    sealed: /^ARC-Seal:/im.test(result.headers),
    ...(sealErrors?.length ? { sealError: String(sealErrors[0]?.err?.message ?? 'seal failed').slice(0, 200) } : {}),
  }
}

/** How many ARC-Seal fields of the header section carry d=<domain>: our own earlier hops. */
export function ownArcSeals(raw: Buffer, domain: string): number {
  const head = raw.toString('latin1', 0, Math.min(raw.length, 256 * 1024))
  const end = head.search(/\r?\n\r?\n/)
  const unfolded = (end >= 0 ? head.slice(0, end) : head).replace(/\r?\n[ \t]+/g, ' ')
  let n = 0
  const want = domain.toLowerCase()
  for (const line of unfolded.split(/\r?\n/)) {
    if (!/^arc-seal:/i.test(line)) continue
    const d = /(?:^|;)[ \t]*d[ \t]*=[ \t]*([^;\s]+)/i.exec(line.slice(line.indexOf(':') + 1))
    if (d?.[1]?.toLowerCase() === want) n++
  }
  return n
}
