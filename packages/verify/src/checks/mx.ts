import { isIP } from 'node:net'
import type { DnsResolver, MxRecord } from '../dns/resolver.ts'
import { lookup } from '../dns/resolver.ts'
import type { CheckResult } from '../types.ts'
import { CheckBuilder, clip } from './result.ts'

/** A hostile zone can list thousands of MX hosts; the most preferred ones decide. */
const MAX_HOSTS = 10

type Host = { exchange: string; priority: number; usable: boolean | 'unknown'; problem?: string; addresses?: string[] }

/**
 * At least one MX host that can receive mail: bounces and complaints must reach the
 * domain. We require explicit MX records, not the implicit-MX fallback to the A record.
 */
export async function checkMx(domain: string, dns: DnsResolver): Promise<CheckResult> {
  const c = new CheckBuilder('mx')
  const mx = await lookup(() => dns.resolveMx(domain))
  if (mx.status === 'temperror') return c.temperror(`Could not read the MX records of ${domain}: ${mx.error}.`)
  if (mx.status === 'absent') {
    return c.fail(
      mx.code === 'ENOTFOUND'
        ? `${domain} does not exist in DNS (NXDOMAIN): publish the domain with an MX record pointing at your mail server.`
        : `${domain} has no MX record: publish one pointing at the host that receives mail for it.`,
    )
  }
  const records = [...mx.records].sort((a, b) => a.priority - b.priority)
  c.details.records = records.slice(0, 50).map((r) => ({ priority: r.priority, exchange: clip(r.exchange, 255) }))
  if (records.length === 0)
    return c.fail(`${domain} has no MX record: publish one pointing at the host that receives mail for it.`)

  // node:dns reports the root target of a null MX as "" (RFC 7505: "0 .").
  if (records.some((r) => r.exchange === '' || r.exchange === '.')) {
    return c.fail(
      `${domain} publishes a null MX ("0 ."): the domain declares it accepts no mail, so bounces and complaints cannot reach it; publish a real MX host.`,
    )
  }

  const unique = [...new Map(records.map((r) => [r.exchange.toLowerCase(), r])).values()]
  if (unique.length > MAX_HOSTS)
    c.warn(`Only the ${MAX_HOSTS} most preferred of ${unique.length} MX hosts were checked.`)
  const hosts = await Promise.all(unique.slice(0, MAX_HOSTS).map((r) => checkHost(r, dns)))
  c.details.hosts = hosts

  const usable = hosts.filter((h) => h.usable === true)
  const unusable = hosts.filter((h) => h.usable === false)
  const unknown = hosts.filter((h) => h.usable === 'unknown')
  if (usable.length > 0) {
    for (const h of unusable) c.warn(`MX host ${h.exchange} is not usable: ${h.problem}.`)
    for (const h of unknown) c.warn(`MX host ${h.exchange} could not be checked: ${h.problem}.`)
    return c.pass(`${domain} has ${usable.length === 1 ? 'a usable MX host' : `${usable.length} usable MX hosts`}.`)
  }
  if (unknown.length > 0) {
    return c.temperror(
      `Could not check the MX hosts of ${domain}: ${unknown.map((h) => `${h.exchange}: ${h.problem}`).join('; ')}.`,
    )
  }
  return c.fail(
    `None of the MX hosts of ${domain} can receive mail: ${unusable.map((h) => `${h.exchange} ${h.problem}`).join('; ')}; point the MX at a host name that has an A or AAAA record.`,
  )
}

async function checkHost(record: MxRecord, dns: DnsResolver): Promise<Host> {
  const exchange = clip(record.exchange, 255)
  const base = { exchange, priority: record.priority }
  // RFC 7505/5321: an MX names a host, never an address (an IP written as a name resolves nowhere).
  if (isIP(record.exchange) || /^\[.*\]$/.test(record.exchange)) {
    return { ...base, usable: false, problem: 'is an IP address, but an MX must name a host' }
  }
  const [a, aaaa] = await Promise.all([
    lookup(() => dns.resolve4(record.exchange)),
    lookup(() => dns.resolve6(record.exchange)),
  ])
  const addresses = [a, aaaa].flatMap((l) => (l.status === 'found' ? l.records : []))
  if (addresses.length > 0) return { ...base, usable: true, addresses: addresses.slice(0, 16) }
  const failed = [a, aaaa].find((l) => l.status === 'temperror')
  if (failed?.status === 'temperror') return { ...base, usable: 'unknown', problem: failed.error }
  return { ...base, usable: false, problem: 'has no A or AAAA record' }
}
