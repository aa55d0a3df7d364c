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
  /** The message carried `TLS-Required: No` (RFC 8689 section 5): the policy was not enforced. */
  tlsRequiredNo?: true
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
  /** The policy is recorded but not enforced: the message carried `TLS-Required: No`. */
  tlsRequiredNo?: boolean
  /** Sessions are reused only for hosts with the same requirement. */
  key: string
}

/** What a message asks of the transport. */
export type MessageTls = {
  /** REQUIRETLS on MAIL FROM (RFC 8689 section 4). */
  requireTls: boolean
  /** `TLS-Required: No` in its header (section 5); ignored when requireTls is set. */
  tlsRequiredNo: boolean
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
  /** How long a domain's DANE lookups are reused in this process; 0 asks every time. */
  cacheTtlMs?: number
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
  private readonly daneCache = new Map<string, { found: Map<string, DaneLookup>; until: number }>()

  constructor(opts: TlsPoliciesOptions) {
    this.opts = opts
  }

  async forDomain(domain: string, hosts: MxHost[], message: MessageTls): Promise<DomainTls> {
    const { requireTls } = message
    const [dane, sts] = await Promise.all([this.daneCached(domain, hosts), this.opts.mtaSts?.policy(domain)])
    const relaxed = message.tlsRequiredNo && !requireTls
    const decide = (h: MxHost): HostTls => {
      const d = decideHost(domain, h, dane.get(h.name), sts, requireTls)
      if (!relaxed || d.policy === 'opportunistic') return d
      // RFC 8689 section 5: the sender waived the domain's policy; it is only recorded.
      const { refused: _refused, records: _records, ...rest } = d
      return { ...rest, verify: 'none', tlsRequiredNo: true, key: 'none' }
    }
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

  private async daneCached(domain: string, hosts: MxHost[]): Promise<Map<string, DaneLookup>> {
    const ttl = this.opts.cacheTtlMs ?? 0
    if (!this.opts.secureDns) return new Map()
    const key = `${domain} ${hosts.map((h) => h.name).join(' ')}`
    const cached = this.daneCache.get(key)
    if (cached && cached.until > Date.now()) return cached.found
    const found = await this.dane(domain, hosts)
    // A failed TLSA lookup is not kept: the next attempt asks again.
    if (ttl > 0 && ![...found.values()].some((v) => 'error' in v)) {
      if (this.daneCache.size > 10_000) this.daneCache.clear()
      this.daneCache.set(key, { found, until: Date.now() + ttl })
    }
    return found
  }

  /** Usable TLSA records per host, or why a host's lookup failed; empty when the MX answer is not authenticated. */
  private async dane(domain: string, hosts: MxHost[]): Promise<Map<string, DaneLookup>> {
    const found = new Map<string, DaneLookup>()
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

type DaneLookup = TlsaRecord[] | { error: string }

function decideHost(
  domain: string,
  h: MxHost,
  dane: DaneLookup | undefined,
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
