import { domainToASCII } from 'node:url'

/**
 * Lower-case ASCII (A-label) form of a domain, or '' when it is not a domain name. The same
 * rule as the relay's address parsing (services/relay/src/message/addresses.ts), which keeps
 * its own copy because it parses addresses at the SMTP edge.
 */
export function normalizeDomain(domain: string): string {
  const name = domain.trim().replace(/\.$/, '')
  // domainToASCII parses a URL host: `member.example/paypal.com` (or `?…`, `#…`, `\…`) would
  // come back as `member.example`. Only letters, digits, marks, hyphens and dots are a name.
  if (!/^[\p{L}\p{M}\p{N}.-]+$/u.test(name)) return ''
  return domainToASCII(name).toLowerCase()
}
