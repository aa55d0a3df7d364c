import { isIPv4, isIPv6 } from 'node:net'

// What the classifier may report as a recipient: a mailbox as RFC 5321 (and RFC 6531 for
// SMTPUTF8) writes it, nothing else. Reports are hostile or broken: a NUL in a header, a
// quoted-printable soft break that glues the next field onto the address
// (`alice@dest.exampleaction: failed`). Such a value is not an address and must not be
// suppressed or counted as one; the classifier reports '' (not named) instead.

const MAX_ADDRESS = 254
const MAX_LOCAL = 64
const MAX_DOMAIN = 253

/** Dot-atom text: RFC 5322 atext, plus any non-ASCII letter, mark or number (RFC 6531). */
const DOT_ATOM =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\p{L}\p{M}\p{N}-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\p{L}\p{M}\p{N}-]+)*$/u
/** A quoted local part: printable ASCII but `"` and `\`, or a backslash pair. */
const QUOTED = /^"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"$/
/** One host name label: letters (any script, for IDN), digits and inner hyphens. */
const LABEL = /^[a-z0-9\p{L}\p{M}\p{N}](?:[a-z0-9\p{L}\p{M}\p{N}-]{0,61}[a-z0-9\p{L}\p{M}\p{N}])?$/u
const ALL_DIGITS = /^[0-9]+$/

function validDomain(domain: string): boolean {
  if (domain.startsWith('[') && domain.endsWith(']')) {
    const literal = domain.slice(1, -1)
    return isIPv4(literal) || (/^ipv6:/i.test(literal) && isIPv6(literal.slice(5)))
  }
  if (domain.length > MAX_DOMAIN) return false
  const labels = domain.split('.')
  // A name mail can reach has a dot, and its last label is not a number (`a@192.0.2.1`
  // is not an address; `a@[192.0.2.1]` is).
  if (labels.length < 2 || ALL_DIGITS.test(labels.at(-1)!)) return false
  return labels.every((l) => LABEL.test(l))
}

/**
 * `value` lower-cased when it is one mailbox address (`local@domain`, without angle
 * brackets, display name or comments), else ''.
 */
export function mailbox(value: string): string {
  if (!value || value.length > MAX_ADDRESS) return ''
  const at = value.lastIndexOf('@')
  if (at <= 0 || at === value.length - 1) return ''
  const local = value.slice(0, at)
  const domain = value.slice(at + 1).toLowerCase()
  if (Buffer.byteLength(local) > MAX_LOCAL) return ''
  if (!DOT_ATOM.test(local) && !QUOTED.test(local)) return ''
  if (!validDomain(domain)) return ''
  return value.toLowerCase()
}
