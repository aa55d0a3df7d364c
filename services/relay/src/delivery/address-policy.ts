import { BlockList, isIP } from 'node:net'

// Where the relay may connect. A recipient domain is anyone's to publish: an MX or A record
// naming 127.0.0.1, 10.0.0.5 or fe80::1 would make the relay talk SMTP to our own network
// (Redis, Postgres, the metadata service) on a stranger's behalf. Only globally reachable
// unicast addresses are used, unless an operator lists a network (the tests and the local
// stack deliver to loopback sinks).

/** IPv4 blocks that are not globally reachable unicast (IANA special-purpose registry, RFC 6890). */
const INTERNAL_V4: Array<[string, number]> = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata services live here)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast (deprecated)
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and 255.255.255.255
]

/** IPv6 blocks inside global unicast (2000::/3) that are still not reachable mail hosts. */
const INTERNAL_V6_IN_GLOBAL: Array<[string, number]> = [
  ['2001::', 23], // IETF protocol assignments: Teredo, benchmarking, ORCHID
  ['2001:db8::', 32], // documentation
  ['3fff::', 20], // documentation (RFC 9637)
]

const v4Internal = new BlockList()
for (const [net, prefix] of INTERNAL_V4) v4Internal.addSubnet(net, prefix, 'ipv4')
const v6Global = new BlockList()
v6Global.addSubnet('2000::', 3, 'ipv6')
const v6InternalInGlobal = new BlockList()
for (const [net, prefix] of INTERNAL_V6_IN_GLOBAL) v6InternalInGlobal.addSubnet(net, prefix, 'ipv6')

/** A network in CIDR notation (`127.0.0.0/8`, `fd00::/8`); a bare address is a single host. */
export function parseCidr(text: string): { network: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [network = '', prefixText, ...rest] = text.trim().split('/')
  const version = isIP(network)
  if (!version || rest.length) return undefined
  const max = version === 4 ? 32 : 128
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN
  if (!(prefix >= 0 && prefix <= max)) return undefined
  return { network, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
}

/** The IPv4 address an IPv6 address carries, in the forms that reach an IPv4 host. */
function embeddedV4(address: string): string | undefined {
  const words = expandV6(address)
  if (!words) return undefined
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`
  const zero = (from: number, to: number) => words.slice(from, to).every((w) => w === 0)
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (the deprecated compatible form)
  if (zero(0, 5) && (words[5] === 0xffff || words[5] === 0)) return v4(words[6]!, words[7]!)
  // 64:ff9b::a.b.c.d (NAT64, RFC 6052)
  if (words[0] === 0x64 && words[1] === 0xff9b && zero(2, 6)) return v4(words[6]!, words[7]!)
  // 2002:AABB:CCDD::/48 (6to4)
  if (words[0] === 0x2002) return v4(words[1]!, words[2]!)
  return undefined
}

/** Eight 16-bit words of an IPv6 address (dotted IPv4 tails included); undefined if not one. */
function expandV6(address: string): number[] | undefined {
  if (isIP(address) !== 6) return undefined
  let text = address.toLowerCase().split('%')[0] ?? ''
  // A dotted IPv4 tail (`::ffff:1.2.3.4`) is whatever follows the last colon.
  const v4 = text.slice(text.lastIndexOf(':') + 1)
  if (isIP(v4) === 4) {
    const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, -v4.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const part = (s: string | undefined) => (s ? s.split(':').map((w) => Number.parseInt(w, 16)) : [])
  const left = part(head)
  const right = part(tail)
  const fill = tail === undefined ? [] : new Array(8 - left.length - right.length).fill(0)
  const words = [...left, ...fill, ...right]
  return words.length === 8 ? words : undefined
}

/**
 * Decides whether the relay may connect to an address. `allowed` (CIDR networks) lets
 * chosen internal networks through: loopback sinks in tests and the local stack, a
 * smarthost on a private network.
 */
export class AddressPolicy {
  private readonly allowed = new BlockList()

  constructor(allowedNetworks: readonly string[] = []) {
    for (const text of allowedNetworks) {
      const cidr = parseCidr(text)
      if (!cidr) throw new Error(`not a network in CIDR notation: ${text}`)
      this.allowed.addSubnet(cidr.network, cidr.prefix, cidr.family)
    }
  }

  /** Why the address is refused (its kind), or undefined when the relay may connect to it. */
  refusal(address: string): string | undefined {
    const version = isIP(address)
    if (version === 4) return this.refuseV4(address)
    if (version !== 6) return 'not an IP address'
    if (this.allowed.check(address, 'ipv6')) return undefined
    const v4 = embeddedV4(address)
    if (v4 !== undefined) return this.refuseV4(v4)
    if (!v6Global.check(address, 'ipv6')) return 'not a global unicast IPv6 address'
    if (v6InternalInGlobal.check(address, 'ipv6')) return 'a special-purpose IPv6 address'
    return undefined
  }

  private refuseV4(address: string): string | undefined {
    if (this.allowed.check(address, 'ipv4')) return undefined
    return v4Internal.check(address, 'ipv4') ? 'an internal or reserved IPv4 address' : undefined
  }
}
