import { readVerpAddress, type VerpConfig } from '@atmos/mail-feedback'
import type { MemberDomain } from '../forwarding/member-domains.ts'
import { isHostName, readSrsAddress, type SrsKey } from '../forwarding/srs.ts'

// Which envelope recipients port 25 accepts. Only the pool's own mailboxes: a VERP address
// whose token verifies, the feedback-loop, DMARC report and operator mailboxes, at the pool or bounce
// domain. The local part must be exactly one of those names, so relay tricks (`a%b@pool`,
// `a!b@pool`, quoted local parts, a source route that smtp-server strips down to a foreign
// address) fall out as unknown mailboxes without a rule of their own.
//
// Besides those: the SRS addresses the pool's forwards are sent from (hash and timestamp
// verified: their bounces come back there), and addresses at a domain a member enrolled
// whose forward-to is set (replies to the member's mail, forwarded). An enrolled domain
// without a forward-to, or whose forward-to is suppressed, has no mailbox here (550 5.1.1);
// any other domain is relaying, refused as before.

export type RecipientPolicy = {
  verp: VerpConfig
  poolDomain: string
  operatorMailboxes: readonly string[]
  feedbackMailboxes: readonly string[]
  srs: SrsKey
  /** An SRS address older than this many days is refused. */
  srsMaxAgeDays: number
  /** The DMARC aggregate report mailbox (`rua=`); empty: none. */
  dmarcMailbox: string
}

export type AcceptedRecipient =
  | { address: string; kind: 'verp' | 'feedback' | 'operator' | 'dmarc' | 'srs' }
  | { address: string; kind: 'member'; domain: MemberDomain }

export type Refusal = { code: number; message: string; reason: RecipientRefusal }

export type RecipientRefusal =
  | 'foreign_domain'
  | 'unknown_mailbox'
  | 'bad_token'
  | 'syntax'
  | 'no_forward_to'
  | 'forward_to_suppressed'
  | 'forward_rate'

const LOCAL = /^[a-z0-9][a-z0-9._+-]{0,63}$/

export function checkRecipient(raw: string, policy: RecipientPolicy): AcceptedRecipient | Refusal {
  const address = raw.trim().toLowerCase()
  const at = address.lastIndexOf('@')
  if (at <= 0) return refuse('syntax', `<${raw}>: not an address here`)
  const local = address.slice(0, at)
  const domain = address.slice(at + 1).replace(/\.$/, '')
  const pool = policy.poolDomain.toLowerCase()
  const bounces = policy.verp.bounceDomain.toLowerCase()
  if (domain !== pool && domain !== bounces) {
    return refuse('foreign_domain', `<${raw}>: relay access denied; this host only accepts mail for ${pool}`)
  }
  if (domain === bounces && local.startsWith('srs0=')) {
    // As for VERP: a forged or stale SRS address would let anyone file bounces against forwards.
    return readSrsAddress(policy.srs, address, policy.srsMaxAgeDays).ok
      ? { address, kind: 'srs' }
      : refuse('bad_token', `<${raw}>: not a valid bounce address`)
  }
  if (!LOCAL.test(local)) return refuse('unknown_mailbox', `<${raw}>: no such mailbox here`)
  if (policy.dmarcMailbox && local === policy.dmarcMailbox) return { address, kind: 'dmarc' }
  if (policy.operatorMailboxes.includes(local)) return { address, kind: 'operator' }
  if (policy.feedbackMailboxes.includes(local)) return { address, kind: 'feedback' }
  if (domain === bounces && local.startsWith(`${policy.verp.prefix.toLowerCase()}+`)) {
    // A forged or mangled token would let anyone file bounces against members: refuse it at RCPT.
    return readVerpAddress(policy.verp, address)
      ? { address, kind: 'verp' }
      : refuse('bad_token', `<${raw}>: not a valid bounce address`)
  }
  return refuse('unknown_mailbox', `<${raw}>: no such mailbox here`)
}

function refuse(reason: RecipientRefusal, text: string): Refusal {
  return { code: 550, message: `5.7.1 ${text}`, reason }
}

/** Whether an address is at the pool or bounce domain (its recipients are never forwarded). */
export function atPoolDomain(address: string, policy: RecipientPolicy): boolean {
  const domain = address
    .slice(address.lastIndexOf('@') + 1)
    .toLowerCase()
    .replace(/\.$/, '')
  return domain === policy.poolDomain.toLowerCase() || domain === policy.verp.bounceDomain.toLowerCase()
}

/** Looks up a member's enrolled domain; throws when the look-up fails (the RCPT is then deferred). */
export type DomainLookup = (domain: string) => Promise<MemberDomain | null>

/**
 * The whole RCPT decision: the pool's own mailboxes as above, else an address at a member's
 * enrolled domain that forwards. A suspended domain still forwards: replies are the member's
 * own mail, and cutting them off would hide the very notices that explain the suspension. A
 * pending domain (enrolment not finished) is no domain of ours yet.
 */
export async function checkInboundRecipient(
  raw: string,
  policy: RecipientPolicy,
  lookup: DomainLookup,
  forwardsPerHour: number,
): Promise<AcceptedRecipient | Refusal> {
  const pool = checkRecipient(raw, policy)
  if (!('reason' in pool) || pool.reason !== 'foreign_domain') return pool
  const address = raw.trim().toLowerCase()
  const at = address.lastIndexOf('@')
  const local = address.slice(0, at)
  const domain = address.slice(at + 1).replace(/\.$/, '')
  // Not even a host name: no query for it.
  if (!isHostName(domain)) return pool
  const found = await lookup(domain)
  if (!found || found.status === 'pending') return pool
  const unknown = (reason: RecipientRefusal) => ({
    code: 550,
    message: `5.1.1 <${raw}>: no mailbox here accepts mail for this address`,
    reason,
  })
  // The same strict local part as the pool's own: %, !, quotes and routes never reach a forward.
  if (!LOCAL.test(local)) return unknown('unknown_mailbox')
  if (!found.forwardTo) return unknown('no_forward_to')
  if (found.forwardToSuppressed) return unknown('forward_to_suppressed')
  if (forwardsPerHour > 0 && found.forwardsLastHour >= forwardsPerHour) {
    return {
      code: 450,
      message: `4.7.1 <${raw}>: too much mail for ${domain} this hour; try again later`,
      reason: 'forward_rate',
    }
  }
  return { address, kind: 'member', domain: found }
}
