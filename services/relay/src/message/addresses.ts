import { domainToASCII } from 'node:url'

/** Lower-case ASCII (A-label) form of a domain, or '' when it is not a domain name. */
export function normalizeDomain(domain: string): string {
  const name = domain.trim().replace(/\.$/, '')
  // domainToASCII parses a URL host: `member.example/paypal.com` (or `?…`, `#…`, `\…`) would
  // come back as `member.example`. Only letters, digits, marks, hyphens and dots are a name.
  if (!/^[\p{L}\p{M}\p{N}.-]+$/u.test(name)) return ''
  return domainToASCII(name).toLowerCase()
}

/** The domain of an address (after the last @), normalized; '' when there is none. */
export function addressDomain(address: string): string {
  const at = address.lastIndexOf('@')
  return at > 0 ? normalizeDomain(address.slice(at + 1)) : ''
}

/** True when `domain` is `parent` itself or one of its subdomains. */
export function isSameOrSubdomain(domain: string, parent: string): boolean {
  return domain === parent || domain.endsWith(`.${parent}`)
}

// A recipient's local part must be a plain dot-atom (UTF-8 letters allowed for SMTPUTF8):
// quoted strings, `%` and `!` are the old routing forms (`user%other@relay`,
// `host!user`) that turn a relay into an open one, so none of them is ever accepted.
const LOCAL_PART = /^[\p{L}\p{N}!#$&'*+/=?^_`{|}~-]+(?:\.[\p{L}\p{N}!#$&'*+/=?^_`{|}~-]+)*$/u
const HOSTNAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/

export type RecipientCheck = { ok: true; address: string; domain: string } | { ok: false; reason: string }

/** Accepts only `dot-atom@hostname` recipients; the address comes back with its domain normalized. */
export function checkRecipient(address: string): RecipientCheck {
  const at = address.lastIndexOf('@')
  if (at <= 0) return { ok: false, reason: 'a recipient needs a local part and a domain' }
  const local = address.slice(0, at)
  if (local.length > 64 || /[%!"\\@\s]/.test(local) || !LOCAL_PART.test(local)) {
    return { ok: false, reason: 'quoted local parts, "%" and "!" routing are not accepted' }
  }
  const domain = addressDomain(address)
  if (!HOSTNAME.test(domain))
    return { ok: false, reason: 'the recipient domain must be a host name (no address literals)' }
  return { ok: true, address: `${local}@${domain}`, domain }
}
