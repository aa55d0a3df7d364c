import { readVerpAddress, type VerpConfig } from '@atmos/mail-feedback'

// Which envelope recipients port 25 accepts. Only the pool's own mailboxes: a VERP address
// whose token verifies, the feedback-loop, DMARC report and operator mailboxes, at the pool or bounce
// domain. The local part must be exactly one of those names, so relay tricks (`a%b@pool`,
// `a!b@pool`, quoted local parts, a source route that smtp-server strips down to a foreign
// address) fall out as unknown mailboxes without a rule of their own.

export type RecipientPolicy = {
  verp: VerpConfig
  poolDomain: string
  operatorMailboxes: readonly string[]
  feedbackMailboxes: readonly string[]
  /** The DMARC aggregate report mailbox (`rua=`); empty: none. */
  dmarcMailbox: string
}

export type AcceptedRecipient = { address: string; kind: 'verp' | 'feedback' | 'operator' | 'dmarc' }

export type Refusal = { code: number; message: string; reason: RecipientRefusal }

export type RecipientRefusal = 'foreign_domain' | 'unknown_mailbox' | 'bad_token' | 'syntax'

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
