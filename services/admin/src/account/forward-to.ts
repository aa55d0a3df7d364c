import { auditLog, type Db } from '@atmos/db'
import { checkDomain, DomainError } from '@atmos/enrolment'
import { sql } from 'drizzle-orm'

/**
 * The forward-to address of a member's domain: where fbl-ingest forwards the replies that
 * reach the pool for that domain. It is an address our mail goes to, so it is held to one
 * plain addr-spec (RFC 5321 dot-atom local part, a host name): no display name, no quoted
 * local part, no comments, no route, no second address, nothing a mail parser might read as
 * two things. ASCII only, at most 254 octets (the RFC 5321 path limit).
 */

export const MAX_FORWARD_TO = 254
const MAX_LOCAL = 64
/** RFC 5322 atext: one character at a time, so nothing here can backtrack. */
const ATEXT = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$/

export class ForwardToError extends Error {
  override name = 'ForwardToError'
}

/**
 * The address as stored (the domain lower-cased, the local part as typed), or
 * ForwardToError saying what to fix. `ownDomain` is the domain being forwarded: an address
 * at it would send each reply back to itself.
 */
export function parseForwardTo(input: string, ownDomain: string): string {
  const text = input.trim()
  if (!text) throw new ForwardToError('Enter an email address, or use "Stop forwarding".')
  if (text.length > MAX_FORWARD_TO) throw new ForwardToError(`An address is at most ${MAX_FORWARD_TO} characters.`)
  const at = text.indexOf('@')
  if (at < 0 || at !== text.lastIndexOf('@')) {
    throw new ForwardToError('Enter one plain address such as you@example.com, without a name or angle brackets.')
  }
  const local = text.slice(0, at)
  const host = text.slice(at + 1)
  if (!local || local.length > MAX_LOCAL) {
    throw new ForwardToError(`The part before @ must be 1 to ${MAX_LOCAL} characters.`)
  }
  // A dot-atom: atoms parted by single dots, none at either end.
  if (!local.split('.').every((atom) => ATEXT.test(atom))) {
    throw new ForwardToError(
      "The part before @ may hold letters, digits and ! # $ % & ' * + - / = ? ^ _ ` { | } ~, with single dots between them.",
    )
  }
  let domain: string
  try {
    domain = checkDomain(host)
  } catch (err) {
    if (!(err instanceof DomainError)) throw err
    throw new ForwardToError(
      `The part after @ must be a domain name such as example.com (${host.slice(0, 100)} is not).`,
    )
  }
  // checkDomain takes IDNs and turns them into A-labels; an address we forward to stays as typed.
  if (domain !== host.toLowerCase()) {
    throw new ForwardToError(
      'Enter the domain in plain ASCII without a trailing dot (for an internationalised domain, its xn-- form).',
    )
  }
  if (domain === ownDomain) {
    throw new ForwardToError(
      `Replies to ${ownDomain} cannot be forwarded to ${ownDomain} itself: they would come back.`,
    )
  }
  return `${local}@${domain}`
}

/**
 * Sets (or with null clears) the forward-to of the member's live domain, with its audit row,
 * in one transaction; false when the member holds no such live domain.
 */
export async function setForwardTo(
  db: Db,
  input: {
    member: { id: number; did: string }
    domain: string
    forwardTo: string | null
    actor: string
    detail: Record<string, unknown>
  },
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const [row] = await tx.execute<{ id: string; forward_to: string | null }>(sql`
      select id::text, forward_to from domains
      where member_id = ${input.member.id} and domain = ${input.domain} and removed_at is null
      for update`)
    if (!row) return false
    await tx.execute(sql`update domains set forward_to = ${input.forwardTo}, updated_at = now() where id = ${row.id}`)
    await tx.insert(auditLog).values({
      actor: input.actor,
      action: input.forwardTo === null ? 'domain.forward_to_cleared' : 'domain.forward_to_set',
      did: input.member.did,
      domain: input.domain,
      memberId: input.member.id,
      detail: { ...input.detail, from: row.forward_to, to: input.forwardTo },
    })
    return true
  })
}
