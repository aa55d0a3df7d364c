import { promises as dns } from 'node:dns'
import { isIP } from 'node:net'
import type { InboundAuth } from '@atmos/db'
import { withTimeout } from '@atmos/runtime'
import { authenticate, type DNSResolver } from 'mailauth'

// Mail to an operator mailbox may be forwarded to the operator's inbox. Whether it may is
// decided at receipt, where the client's IP, HELO and MAIL FROM are known: a message that
// fails DMARC for its own From domain is a forgery of that domain (or broken), and sending it
// on, even wrapped, spends the pool's reputation on it. The verdict is stored with the row.

/** A DNS resolver for mailauth over the given servers (`host` or `host:port`); none: the machine's. */
export function dnsResolver(servers: readonly string[], timeoutMs: number, port = 0): DNSResolver {
  const resolver = new dns.Resolver({ timeout: Math.max(1, Math.floor(timeoutMs / 2)), tries: 2 })
  // An entry that names no port takes `port` (fblIngest.dnsPort), as the report checks do.
  const withPort = (s: string) => (!port || !isIP(s) ? s : isIP(s) === 6 ? `[${s}]:${port}` : `${s}:${port}`)
  if (servers.length) resolver.setServers(servers.map(withPort))
  return (name, type) => resolver.resolve(name, type) as Promise<string[][] | string[]>
}

export type ReceiptContext = {
  ip: string
  helo: string
  mailFrom: string
  /** Our name, in the verdict's authserv-id. */
  mta: string
  resolver: DNSResolver
  /** The whole check; past it the verdict is 'error' and the message is not forwarded. */
  timeoutMs: number
}

/** DKIM, SPF and DMARC of one received message; never throws (a failed check is the 'error' verdict). */
export async function authenticateReceipt(raw: Buffer, ctx: ReceiptContext): Promise<InboundAuth> {
  try {
    const result = await withTimeout(
      authenticate(raw, {
        ip: ctx.ip,
        helo: ctx.helo,
        sender: ctx.mailFrom,
        mta: ctx.mta,
        resolver: ctx.resolver,
        disableArc: true,
        disableBimi: true,
      }),
      ctx.timeoutMs,
      'message authentication',
    )
    const dmarc = result.dmarc
    return {
      // No DMARC result: no single author domain (RFC 9989 5.3.1), which is no pass either.
      dmarc: dmarc ? dmarc.status.result : (result.dmarcSkipReason ?? 'none-evaluated'),
      fromDomain: dmarc ? dmarc.status.header?.from || null : null,
      spf: result.spf ? result.spf.status.result : 'none',
      dkim: (result.dkim.results ?? []).map((r) => `${r.signingDomain ?? '?'}:${r.status.result}`).slice(0, 10),
    }
  } catch (err) {
    return { dmarc: 'error', fromDomain: null, spf: 'error', dkim: [`error: ${(err as Error).message.slice(0, 200)}`] }
  }
}
