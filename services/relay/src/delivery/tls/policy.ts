import type { SmtpReply } from '@atmos/mail-feedback'
import type { Logger } from '@atmos/runtime'
import { describeDnsError, type SecureDnsResolver, type TlsaRecord } from '@atmos/verify'
import type { MxHost } from '../mx-routes.ts'
import { tlsaName, usableTlsa } from './dane.ts'
import { type MtaSts, mxMatches, type StsPolicy } from './mta-sts.ts'

/** What an attempt records in delivery_attempts.tls. */
export type TlsRecord = {
  policy: 'opportunistic' | 'mta-sts' | 'dane'
  /** The MTA-STS policy's mode. */
  mode?: 'enforce' | 'testing'
  /** The message asked for REQUIRETLS (RFC 8689). */
  requireTls?: true
  /** Absent when the session stayed in plain text (or never opened). */
  version?: string
  cipher?: string
  /** The certificate was verified: WebPKI for the MX name, or a matching TLSA record. */
  verified: boolean
  /** What fell short of the policy (enforced: the attempt deferred; testing: delivered anyway). */
  failure?: string
}

/** What one MX host must offer before a message goes to it. */
export type HostTls = {
  policy: TlsRecord['policy']
  mode?: 'enforce' | 'testing'
  /** none: opportunistic (plain text when TLS fails); pkix: WebPKI for the MX name; dane: TLSA. */
  verify: 'none' | 'pkix' | 'dane'
  records?: TlsaRecord[]
  /** Names the certificate may carry (DANE-TA): the MX host and the recipient domain. */
  names: string[]
  /** The host may not be used at all: why (MX not in an enforced policy, TLSA lookup failed…). */
  refused?: string
  /** A shortfall known before connecting, recorded (testing: MX not in the policy). */
  failure?: string
  requireTls: boolean
  /** Sessions are reused only for hosts with the same requirement. */
  key: string
}

/** The TLS requirements of one recipient domain's hosts. */
export type DomainTls = {
  host(h: MxHost): HostTls
  /** REQUIRETLS cannot be met by any host: the message fails with this reply. */
  permanent?: SmtpReply
}

export type TlsPoliciesOptions = {
  /** Absent: MTA-STS is off. */
  mtaSts?: MtaSts
  /** Absent: the resolver does not validate DNSSEC, so DANE is off. */
  secureDns?: SecureDnsResolver
  logger: Logger
}

/**
 * Which TLS each MX host of a domain must offer. DANE first (RFC 7672: usable TLSA records
 * of a host whose MX answer and TLSA answer were both authenticated), then MTA-STS (RFC 8461
 * section 2: a domain's DANE hosts are exempt from its MTA-STS policy), else opportunistic
 * TLS (RFC 7435). REQUIRETLS (RFC 8689 section 4.1) accepts only an authenticated host:
 * DANE, or an MTA-STS policy that names it and a WebPKI certificate for it.
 */
export class TlsPolicies {
  private readonly opts: TlsPoliciesOptions

  constructor(opts: TlsPoliciesOptions) {
    this.opts = opts
  }

  async forDomain(domain: string, hosts: MxHost[], requireTls: boolean): Promise<DomainTls> {
    const [dane, sts] = await Promise.all([this.dane(domain, hosts), this.opts.mtaSts?.policy(domain)])
    const decide = (h: MxHost): HostTls => decideHost(domain, h, dane.get(h.name), sts, requireTls)
    const decided = hosts.map(decide)
    const usable = decided.some((d) => !d.refused)
    if (requireTls && !usable && decided.every((d) => d.requireTls && d.refused?.startsWith('REQUIRETLS'))) {
      return {
        host: decide,
        permanent: {
          code: 550,
          enhanced: '5.7.30',
          text: `REQUIRETLS: no MX host of ${domain} can be authenticated (no DANE or MTA-STS policy names one)`,
        },
      }
    }
    return { host: decide }
  }

  /** Usable TLSA records per host, or why a host's lookup failed; empty when the MX answer is not authenticated. */
  private async dane(domain: string, hosts: MxHost[]): Promise<Map<string, TlsaRecord[] | { error: string }>> {
    const found = new Map<string, TlsaRecord[] | { error: string }>()
    const dns = this.opts.secureDns
    if (!dns) return found
    try {
      const mx = await dns.resolveMx(domain)
      if (!mx.authenticated) return found
    } catch (err) {
      // The route was resolved a moment ago: a failure now is a blip, and DANE stays off
      // for this attempt only, as for an unsigned domain.
      this.opts.logger.debug({ domain, err: describeDnsError(err) }, 'DNSSEC MX lookup failed')
      return found
    }
    await Promise.all(
      hosts.map(async (h) => {
        try {
          const tlsa = await dns.resolveTlsa(tlsaName(h.name))
          if (tlsa.authenticated && tlsa.records.length) found.set(h.name, usableTlsa(tlsa.records))
        } catch (err) {
          // RFC 7672 section 2.2: a secure MX host whose TLSA lookup fails is not used.
          found.set(h.name, { error: `TLSA lookup for ${tlsaName(h.name)}: ${describeDnsError(err)}` })
        }
      }),
    )
    return found
  }
}

function decideHost(
  domain: string,
  h: MxHost,
  dane: TlsaRecord[] | { error: string } | undefined,
  sts: StsPolicy | undefined,
  requireTls: boolean,
): HostTls {
  const names = [h.name, domain]
  const base = { names, requireTls }
  if (dane && 'error' in dane) {
    return { ...base, policy: 'dane', verify: 'dane', refused: `4.7.5 ${dane.error}`, key: 'refused' }
  }
  // Section 2.2 of RFC 7672: TLSA records none of which is usable count as none.
  if (dane?.length) {
    const fingerprint = dane.map((r) => `${r.usage}${r.selector}${r.matchingType}${r.data.toString('hex')}`).join(',')
    return { ...base, policy: 'dane', verify: 'dane', records: dane, key: `dane:${fingerprint}` }
  }
  if (sts) {
    const matched = mxMatches(sts.mx, h.name)
    const mode = sts.mode === 'enforce' ? 'enforce' : 'testing'
    if (mode === 'enforce' || requireTls) {
      if (!matched) {
        return {
          ...base,
          policy: 'mta-sts',
          mode,
          verify: 'pkix',
          refused: `4.7.5 MTA-STS: ${h.name} is not an MX host of ${domain}'s policy`,
          key: 'refused',
        }
      }
      return { ...base, policy: 'mta-sts', mode, verify: 'pkix', key: 'pkix' }
    }
    return {
      ...base,
      policy: 'mta-sts',
      mode,
      verify: 'none',
      key: 'none',
      ...(matched ? {} : { failure: `${h.name} is not an MX host of ${domain}'s policy` }),
    }
  }
  if (requireTls) {
    return {
      ...base,
      policy: 'opportunistic',
      verify: 'none',
      refused: `REQUIRETLS: ${h.name} cannot be authenticated (no DANE or MTA-STS policy)`,
      key: 'refused',
    }
  }
  return { ...base, policy: 'opportunistic', verify: 'none', key: 'none' }
}
