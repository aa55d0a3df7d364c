import { BlockList, isIP } from 'node:net'

// Where a webhook may never connect: everything that is not the public internet. A member
// chooses the URL, so without this the pool would be a proxy into its own network (the
// cloud metadata service at 169.254.169.254, Redis, Postgres, the ops ports).

const FORBIDDEN = new BlockList()
for (const [net, bits] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // CGNAT (shared address space)
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  FORBIDDEN.addSubnet(net, bits, 'ipv4')
}
for (const [net, bits] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['64:ff9b::', 96], // NAT64: likewise
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 23], // IETF protocol assignments (Teredo, ORCHID…)
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4: reaches an embedded IPv4 address
  ['fc00::', 7], // unique local (AWS metadata fd00:ec2::254 too)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) {
  FORBIDDEN.addSubnet(net, bits, 'ipv6')
}

// IPv4-mapped IPv6 (::ffff:a.b.c.d) is an IPv4 address in disguise, and no public endpoint
// needs it: refused whole. It has a list of its own because BlockList matches IPv4 addresses
// against mapped subnets too: in FORBIDDEN, ::ffff:0:0/96 would refuse every IPv4 address.
const MAPPED = new BlockList()
MAPPED.addSubnet('::ffff:0:0', 96, 'ipv6')

/** Why a webhook may not connect to this address, or undefined when it is a public one. */
export function forbiddenAddress(address: string): string | undefined {
  const family = isIP(address)
  if (family === 0) return `${address.slice(0, 64)} is not an IP address`
  return (family === 6 && MAPPED.check(address, 'ipv6')) || FORBIDDEN.check(address, family === 4 ? 'ipv4' : 'ipv6')
    ? `${address} is not a public address (private, loopback, link-local, CGNAT, multicast or reserved)`
    : undefined
}
