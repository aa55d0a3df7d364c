import { BlockList, isIP } from 'node:net'

// The pool's own sending addresses, so that a member's report splits into "the pool" and
// "everyone else sending as you". Configured (fblIngest.dmarc.poolIps), not derived from
// DNS: the pool's SPF record could be changed by whoever holds its zone, and a report row
// must not turn into "the pool" by a lookup made at processing time.

export type Cidr = { address: string; prefix: number; family: 'ipv4' | 'ipv6' }

/** `192.0.2.25`, `192.0.2.0/24`, `2001:db8::/32`; null for anything else. */
export function parseCidr(value: string): Cidr | null {
  const [address = '', bits, extra] = value.trim().split('/')
  if (extra !== undefined) return null
  const version = isIP(address)
  if (!version) return null
  const max = version === 4 ? 32 : 128
  if (bits !== undefined && !/^\d{1,3}$/.test(bits)) return null
  const prefix = bits === undefined ? max : Number(bits)
  if (prefix > max) return null
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
}

/** Whether an address (as a report writes it) is one of the pool's. */
export type PoolIpMatcher = (ip: string) => boolean

export function poolIpMatcher(entries: readonly string[]): PoolIpMatcher {
  const list = new BlockList()
  for (const e of entries) {
    const c = parseCidr(e)
    if (!c) throw new Error(`not an IP address or range: ${e}`)
    list.addSubnet(c.address, c.prefix, c.family)
  }
  return (ip) => {
    const version = isIP(ip)
    if (!version) return false
    // BlockList matches an IPv4-mapped IPv6 address (::ffff:192.0.2.1) only as IPv6: look at both.
    const mapped = version === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1] : undefined
    return list.check(ip, version === 4 ? 'ipv4' : 'ipv6') || (mapped !== undefined && list.check(mapped, 'ipv4'))
  }
}
