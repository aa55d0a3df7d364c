import type { SmtpReply } from '@atmos/mail-feedback'
import { type DnsResolver, describeDnsError, errorCode, isAbsence } from '@atmos/verify'
import type { AddressPolicy } from './address-policy.ts'

/** One host to try, with its addresses (IPv4 first: providers judge IPv6 senders more strictly). */
export type MxHost = { name: string; preference: number; addresses: string[] }

/**
 * Where a domain's mail goes: its MX hosts by preference (or the domain itself when it
 * has no MX), a permanent failure with the reply to record, or a temporary DNS failure
 * that only defers.
 */
export type Route =
  | { status: 'hosts'; hosts: MxHost[] }
  | { status: 'permanent'; reply: SmtpReply }
  | { status: 'temporary'; reason: string }

type Answer<T> = { ok: true; value: T } | { ok: false; absent: boolean; code: string; reason: string }

async function ask<T>(query: () => Promise<T>): Promise<Answer<T>> {
  try {
    return { ok: true, value: await query() }
  } catch (err) {
    const code = errorCode(err)
    return { ok: false, absent: isAbsence(err), code, reason: `${describeDnsError(err)} (${code})` }
  }
}

/**
 * Resolves routes per RFC 5321 section 5.1 and RFC 7505 (null MX), with a short per-process
 * cache. Addresses the policy refuses (internal networks) are left out of every route.
 */
export class MxRouter {
  private readonly dns: DnsResolver
  private readonly cacheTtlMs: number
  private readonly policy: AddressPolicy
  private readonly cache = new Map<string, { route: Route; until: number }>()

  constructor(opts: { dns: DnsResolver; cacheTtlMs: number; policy: AddressPolicy }) {
    this.dns = opts.dns
    this.cacheTtlMs = opts.cacheTtlMs
    this.policy = opts.policy
  }

  async route(domain: string): Promise<Route> {
    const key = domain.toLowerCase()
    const cached = this.cache.get(key)
    if (cached && cached.until > Date.now()) return cached.route
    const route = await this.resolve(key)
    // A temporary failure is not cached: the next attempt asks again.
    if (this.cacheTtlMs > 0 && route.status !== 'temporary') {
      if (this.cache.size > 10_000) this.cache.clear()
      this.cache.set(key, { route, until: Date.now() + this.cacheTtlMs })
    }
    return route
  }

  private async resolve(domain: string): Promise<Route> {
    const mx = await ask(() => this.dns.resolveMx(domain))
    if (!mx.ok && !mx.absent) return { status: 'temporary', reason: `MX lookup for ${domain}: ${mx.reason}` }
    if (mx.ok) {
      if (mx.value.some((r) => r.exchange === '' || r.exchange === '.')) {
        return {
          status: 'permanent',
          reply: { code: 556, enhanced: '5.1.10', text: `${domain} publishes a null MX: it accepts no mail` },
        }
      }
      const ordered = byPreference(mx.value)
      const hosts = await Promise.all(ordered.map((r) => this.host(r.exchange, r.priority)))
      return this.usable(domain, hosts)
    }
    if (mx.code === 'ENOTFOUND') {
      return { status: 'permanent', reply: { code: 550, enhanced: '5.1.2', text: `${domain} does not exist` } }
    }
    // No MX record: the domain itself is the implicit MX (its A/AAAA records).
    return this.usable(domain, [await this.host(domain, 0)])
  }

  private usable(domain: string, hosts: Answer<MxHost>[]): Route {
    const resolved = hosts.flatMap((h) => (h.ok ? [h.value] : []))
    const refused: string[] = []
    const found = resolved.flatMap((h) => {
      const addresses = h.addresses.filter((a) => {
        const why = this.policy.refusal(a)
        if (why) refused.push(`${h.name} ${a} (${why})`)
        return !why
      })
      return addresses.length ? [{ ...h, addresses }] : []
    })
    if (found.length) return { status: 'hosts', hosts: found }
    const failure = hosts.find((h) => !h.ok && !h.absent)
    if (failure && !failure.ok)
      return { status: 'temporary', reason: `address lookup for ${domain}: ${failure.reason}` }
    if (refused.length) {
      const shown = refused.slice(0, 3).join(', ') + (refused.length > 3 ? ` and ${refused.length - 3} more` : '')
      return {
        status: 'permanent',
        reply: {
          code: 550,
          enhanced: '5.4.4',
          text: `every mail host of ${domain} is on an internal or reserved network, refused: ${shown}`,
        },
      }
    }
    return {
      status: 'permanent',
      reply: { code: 550, enhanced: '5.1.2', text: `no mail host of ${domain} has an address` },
    }
  }

  /** A host's addresses; absent when it has neither A nor AAAA. */
  private async host(name: string, preference: number): Promise<Answer<MxHost>> {
    const [v4, v6] = await Promise.all([ask(() => this.dns.resolve4(name)), ask(() => this.dns.resolve6(name))])
    const addresses = [...(v4.ok ? v4.value : []), ...(v6.ok ? v6.value : [])]
    if (addresses.length) return { ok: true, value: { name: name.toLowerCase(), preference, addresses } }
    const failed = [v4, v6].find((a) => !a.ok && !a.absent)
    if (failed && !failed.ok) return { ok: false, absent: false, code: failed.code, reason: failed.reason }
    return { ok: false, absent: true, code: 'ENODATA', reason: `${name} has no address` }
  }
}

/** Lowest preference first; hosts of equal preference in random order, to spread the load (RFC 5321 5.1). */
export function byPreference<T extends { priority: number }>(records: T[]): T[] {
  return records
    .map((r) => ({ r, tie: Math.random() }))
    .sort((a, b) => a.r.priority - b.r.priority || a.tie - b.tie)
    .map((x) => x.r)
}
