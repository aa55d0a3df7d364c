import { dnsResolverFor } from '@atmos/relay/test-harness'
import { authenticate } from 'mailauth'

/** What a receiving MX concludes about a message: each DKIM signature's verdict, sorted, and DMARC's. */
export type ReceiverVerdicts = {
  /** [signing domain, algorithm, selector, result] per signature. */
  signatures: string[][]
  dmarc: string
}

/**
 * Authenticates `raw` as a receiver would (mailauth), asking the loopback DNS server at
 * `dnsAddress` (`host:port`), for a message from `ip` that said `helo` and MAIL FROM `sender`.
 */
export async function receiverVerdicts(
  raw: Buffer,
  opts: { ip: string; helo: string; sender: string; dnsAddress: string },
): Promise<ReceiverVerdicts> {
  const result = await authenticate(raw, {
    ip: opts.ip,
    helo: opts.helo,
    sender: opts.sender,
    resolver: dnsResolverFor(opts.dnsAddress),
  } as Parameters<typeof authenticate>[1])
  const signatures = (
    result.dkim.results as Array<{ signingDomain: string; algo: string; selector: string; status: { result: string } }>
  )
    .map((r) => [r.signingDomain, r.algo, r.selector, r.status.result])
    .sort()
  return { signatures, dmarc: result.dmarc ? result.dmarc.status.result : 'absent' }
}
