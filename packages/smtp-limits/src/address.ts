import { isIPv4, isIPv6 } from 'node:net'

/**
 * The unit a per-address limit counts: an IPv4 address, or the /64 an IPv6 address belongs
 * to (one subscriber or one server usually holds a whole /64, so counting single IPv6
 * addresses would give it 2^64 allowances). IPv4-mapped IPv6 addresses count as IPv4.
 */
export function addressKey(raw: string | undefined): string {
  const address = (raw ?? '')
    .trim()
    .toLowerCase()
    .replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '')
  if (isIPv4(address) || !isIPv6(address)) return address
  return `${expandIPv6(address).slice(0, 4).join(':')}::/64`
}

/** The eight groups of an IPv6 address, without leading zeros (an embedded IPv4 tail included). */
function expandIPv6(address: string): string[] {
  let text = address.replace(/%.*$/, '')
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined]
  const left = head ? head.split(':') : []
  const right = tail === undefined ? [] : tail ? tail.split(':') : []
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0')
  return [...left, ...zeros, ...right].map((g) => Number.parseInt(g, 16).toString(16))
}
