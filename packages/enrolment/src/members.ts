import type { MemberStatus, Pool } from '@atmos/db'
import type { Keyring } from '@atmos/secrets'
import { audit } from './audit.ts'
import {
  type AddedDomain,
  addDomainTx,
  checkDomain,
  checkSelectorStem,
  DEFAULT_SELECTOR_STEM,
  newCredentialSecret,
  withHeldDomain,
} from './domains.ts'

// Members (accounts, by DID) as an operator enrols them: with a first domain, the
// list, finding one by DID or by a domain it holds, password rotation. Status changes go
// through @atmos/reputation. The admin's wizard enrols through enrol.ts;
// `relay members …` runs these.

const DID = /^did:[a-z]+:[a-zA-Z0-9._:%-]+$/

export class MemberError extends Error {
  override name = 'MemberError'
}

/** The DID as given, or MemberError naming it. */
export function checkDid(did: string): string {
  if (!DID.test(did) || did.length > 2048) throw new MemberError(`not a DID: ${did.slice(0, 100)}`)
  return did
}

export type AddedMember = AddedDomain & {
  /** members.id */
  id: number
}

/**
 * Enrols a member with its first domain (as `domains add` adds one): active at once, both
 * DKIM keys, a credential scoped to the domain. One transaction.
 */
export async function addMember(
  sql: Pool,
  keyring: Keyring,
  input: {
    did: string
    domain: string
    handle?: string | undefined
    selector?: string | undefined
    maxDomains?: number
    actor?: string
  },
): Promise<AddedMember> {
  checkDid(input.did)
  const domain = checkDomain(input.domain)
  const stem = checkSelectorStem(input.selector ?? DEFAULT_SELECTOR_STEM)
  const actor = input.actor ?? operatorActor()
  const secret = await newCredentialSecret()
  const added = await withHeldDomain(domain, () =>
    sql.begin(async (tx) => {
      const [clash] = await tx<{ id: number }[]>`select id::int as id from members where did = ${input.did}`
      if (clash) {
        throw new MemberError(`a member already exists for ${input.did}; add a domain with: relay domains add`)
      }
      const [member] = await tx<{ id: number }[]>`
        insert into members (did, handle, status, activated_at)
        values (${input.did}, ${input.handle ?? null}, 'active', now())
        returning id::int as id`
      return addDomainTx(tx as unknown as Pool, keyring, {
        member: { id: member!.id, did: input.did },
        domain,
        stem,
        maxDomains: input.maxDomains ?? 1,
        ...secret,
        actor,
        reason: `enrolled by operator with ${domain}`,
      })
    }),
  )
  return { ...added, id: added.memberId }
}

export type MemberRow = {
  id: number
  did: string
  handle: string | null
  status: MemberStatus
  statusReason: string | null
  /** `YYYY-MM-DD` (UTC) */
  activeSince: string | null
  domains: Array<{ domain: string; status: MemberStatus; statusReason: string | null }>
}

export async function listMembers(sql: Pool): Promise<MemberRow[]> {
  return sql<MemberRow[]>`
    select m.id::int as id, m.did, m.handle, m.status, m.status_reason as "statusReason",
      to_char(m.activated_at at time zone 'UTC', 'YYYY-MM-DD') as "activeSince",
      coalesce((select json_agg(json_build_object('domain', d.domain, 'status', d.status, 'statusReason', d.status_reason)
                                order by d.domain)
                from domains d where d.member_id = m.id and d.removed_at is null), '[]'::json) as domains
    from members m
    order by m.id`
}

type Member = { id: number; did: string; status: MemberStatus }

/** A member by DID, or by a domain it holds now. */
export async function findMember(sql: Pool, who: string): Promise<Member> {
  const byDid = who.startsWith('did:')
  const [m] = byDid
    ? await sql<Member[]>`select id::int as id, did, status from members where did = ${who}`
    : await sql<Member[]>`
        select m.id::int as id, m.did, m.status from members m join domains d on d.member_id = m.id
        where d.domain = ${checkDomain(who)} and d.removed_at is null`
  if (!m) throw new MemberError(byDid ? `no member ${who}` : `no member holds ${who} in the relay`)
  return m
}

/** The DID of the member named by DID or by a domain it holds. */
export async function memberDid(sql: Pool, who: string): Promise<string> {
  return (await findMember(sql, who)).did
}

/**
 * New passwords: for a domain, its credential (one is created, scoped to it, when it has
 * none); for a DID, each live credential of the member. The old ones stop working at once.
 * Each is returned once; the audit row names the credential, never the secret.
 */
export async function rotatePassword(
  sql: Pool,
  who: string,
  actor = operatorActor(),
  /** Added to each audit row's detail (the client's address of a web request). */
  auditDetail: Record<string, unknown> = {},
): Promise<Array<{ username: string; password: string }>> {
  const byDid = who.startsWith('did:')
  const domain = byDid ? '' : checkDomain(who)
  const m = await findMember(sql, who)
  const creds = byDid
    ? await sql<{ id: number; username: string; domainId: number | null }[]>`
        select id::int as id, username, domain_id::int as "domainId" from smtp_credentials
        where member_id = ${m.id} and revoked_at is null order by username, id`
    : await sql<{ id: number; username: string; domainId: number | null }[]>`
        select c.id::int as id, c.username, c.domain_id::int as "domainId"
        from smtp_credentials c join domains d on d.id = c.domain_id
        where d.domain = ${domain} and d.removed_at is null and c.revoked_at is null order by c.username, c.id`
  if (byDid && !creds.length) {
    throw new MemberError(
      `${m.did} has no live SMTP credential; give one of its domains one: relay members rotate-password <domain>`,
    )
  }
  const secrets = await Promise.all((creds.length ? creds : [null]).map(() => newCredentialSecret()))
  return sql.begin(async (tx) => {
    const out: Array<{ username: string; password: string }> = []
    if (!creds.length) {
      // A domain without a credential gets one scoped to it.
      const { password, passwordHash } = secrets[0]!
      const [cred] = await tx<{ id: number }[]>`
        insert into smtp_credentials (member_id, domain_id, username, password_hash)
        select ${m.id}, d.id, ${domain}, ${passwordHash} from domains d where d.domain = ${domain} and d.removed_at is null
        returning id::int as id`
      await credentialRotated(tx as unknown as Pool, actor, m, domain, {
        ...auditDetail,
        credentialId: cred!.id,
        username: domain,
        created: true,
      })
      out.push({ username: domain, password })
      return out
    }
    for (const [i, c] of creds.entries()) {
      const { password, passwordHash } = secrets[i]!
      await tx`
        update smtp_credentials set password_hash = ${passwordHash}, created_at = now(), last_used_at = null
        where id = ${c.id}`
      await credentialRotated(tx as unknown as Pool, actor, m, domain || null, {
        ...auditDetail,
        credentialId: c.id,
        username: c.username,
      })
      out.push({ username: c.username, password })
    }
    return out
  })
}

function credentialRotated(
  sql: Pool,
  actor: string,
  m: Member,
  domain: string | null,
  detail: Record<string, unknown>,
) {
  return audit(sql, { actor, action: 'credential.rotated', did: m.did, domain, memberId: m.id, detail })
}

export function operatorActor(): string {
  return `operator:${process.env.USER ?? process.env.LOGNAME ?? 'cli'}`
}
