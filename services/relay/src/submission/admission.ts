import { isSameOrSubdomain } from '../message/addresses.ts'
import type { RefusalReason } from './metrics.ts'
import { type DomainStanding, type Standing, VERIFIED_LABEL } from './standing.ts'

export type Admission =
  | { ok: true; domain: DomainStanding }
  | { ok: false; code: number; text: string; reason: RefusalReason }

const refuse = (text: string, reason: RefusalReason): Admission => ({ ok: false, code: 550, text, reason })

/**
 * The relay's admission rule for one envelope sender: a member sends as a domain, not as a
 * label. The sender must be at (or under) a domain the member holds now, the credential's
 * scope (when it has one) must be that domain, the member and the domain active, the
 * member's attestation for that domain verifying now (verification_status.holds) and the DID
 * holding a current verified-mail-operator label. The closest domain counts: a member
 * holding both example.org and mail.example.org sends from x@mail.example.org as the latter.
 */
export function admitSender(
  standing: Standing | null,
  sender: { address: string; domain: string },
  scopeDomainId: number | null,
): Admission {
  if (!standing || standing.status === 'suspended') {
    const why = standing?.statusReason ? `: ${standing.statusReason}` : ''
    return refuse(`5.7.1 ${standing?.did ?? 'this account'} is suspended from the relay${why}`, 'suspended')
  }
  if (standing.status !== 'active') {
    return refuse(`5.7.1 ${standing.did} is not active in the relay yet`, 'not_active')
  }
  // Longest first (StandingReader's order): the first match is the closest parent.
  const domain = standing.domains.find((d) => isSameOrSubdomain(sender.domain, d.domain))
  if (!domain) {
    const held = standing.domains.map((d) => d.domain).sort()
    return refuse(
      `5.7.1 <${sender.address}> is not at a domain ${standing.did} holds in the relay: ${held.join(', ') || '(none)'}`,
      'foreign_sender',
    )
  }
  if (scopeDomainId !== null && domain.id !== scopeDomainId) {
    const scope = standing.domains.find((d) => d.id === scopeDomainId)
    return refuse(
      scope
        ? `5.7.1 <${sender.address}>: this credential may send only as ${scope.domain} or a subdomain of it`
        : `5.7.1 <${sender.address}>: this credential's domain is no longer held in the relay`,
      'out_of_scope',
    )
  }
  if (domain.status === 'suspended') {
    const why = domain.statusReason ? `: ${domain.statusReason}` : ''
    return refuse(`5.7.1 ${domain.domain} is suspended from the relay${why}`, 'suspended')
  }
  if (domain.status !== 'active') {
    return refuse(`5.7.1 ${domain.domain} is not active in the relay yet`, 'not_active')
  }
  if (!domain.holds || !standing.verified) {
    const detail = domain.holds ? ` (${standing.did} holds no current ${VERIFIED_LABEL} label)` : ''
    return refuse(
      `5.7.1 ${domain.domain}'s attestation does not verify now: fix its DNS and attestation, then retry${detail}`,
      'not_verified',
    )
  }
  return { ok: true, domain }
}
