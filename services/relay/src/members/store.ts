import type { MemberStatus, Pool } from '@atmos/db'
import { createDkimKey, type NewDkimKey } from '@atmos/dkim'
import { generatePassword, hashPassword, type Keyring } from '@atmos/secrets'
import { normalizeDomain } from '../message/addresses.ts'

// The operator's view of members: enrolment with DKIM key and SMTP credentials, status
// changes with their history, password rotation. The admin service takes these over
// later; until then `relay members …` runs them.

const DID = /^did:[a-z]+:[a-zA-Z0-9._:%-]+$/
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const SELECTOR = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/

export class MemberError extends Error {
  override name = 'MemberError'
}

export type AddedMember = {
  id: number
  did: string
  domain: string
  username: string
  /** Shown once; only its hash is stored. */
  password: string
  dkim: NewDkimKey
}

export async function addMember(
  sql: Pool,
  keyring: Keyring,
  input: { did: string; domain: string; handle?: string; selector?: string },
): Promise<AddedMember> {
  const domain = normalizeDomain(input.domain)
  const selector = input.selector ?? 'atmos1'
  if (!DID.test(input.did)) throw new MemberError(`not a DID: ${input.did}`)
  if (!DOMAIN.test(domain)) throw new MemberError(`not a domain name: ${input.domain}`)
  if (!SELECTOR.test(selector)) throw new MemberError(`not a DKIM selector: ${selector}`)
  const password = generatePassword()
  const passwordHash = await hashPassword(password)
  const added = await sql.begin(async (tx) => {
    const [clash] = await tx<{ did: string }[]>`select did from members where did = ${input.did} or domain = ${domain}`
    if (clash) throw new MemberError(`a member already exists for ${clash.did === input.did ? input.did : domain}`)
    // Enrolled by an operator means active at once; warming counts from now.
    const [member] = await tx<{ id: number }[]>`
      insert into members (did, domain, handle, status, activated_at)
      values (${input.did}, ${domain}, ${input.handle ?? null}, 'active', now())
      returning id::int as id`
    await tx`
      insert into member_status_changes (member_id, from_status, to_status, reason, actor)
      values (${member!.id}, null, 'active', 'enrolled by operator', ${operatorActor()})`
    await tx`insert into smtp_credentials (member_id, username, password_hash) values (${member!.id}, ${domain}, ${passwordHash})`
    const dkim = await createDkimKey(tx as unknown as Pool, keyring, { memberId: member!.id, domain, selector })
    return { id: member!.id, dkim }
  })
  return { id: added.id, did: input.did, domain, username: domain, password, dkim: added.dkim }
}

export type MemberRow = {
  id: number
  did: string
  handle: string | null
  domain: string
  status: MemberStatus
  /** `YYYY-MM-DD` (UTC) */
  activeSince: string | null
  username: string | null
}

export async function listMembers(sql: Pool): Promise<MemberRow[]> {
  return sql<MemberRow[]>`
    select m.id::int as id, m.did, m.handle, m.domain, m.status, to_char(m.activated_at at time zone 'UTC', 'YYYY-MM-DD') as "activeSince", c.username
    from members m left join smtp_credentials c on c.member_id = m.id and c.revoked_at is null
    order by m.id`
}

type Member = { id: number; did: string; domain: string; status: MemberStatus }

/** Finds (and with `lock`, locks) a member by DID or domain. */
async function findMember(sql: Pool, who: string, lock = false): Promise<Member> {
  const byDid = who.startsWith('did:')
  const key = byDid ? who : normalizeDomain(who)
  const [m] = await sql<Member[]>`
    select id::int as id, did, domain, status from members
    where ${byDid ? sql`did = ${key}` : sql`domain = ${key}`} ${lock ? sql`for update` : sql``}`
  if (!m) throw new MemberError(`no member ${who}`)
  return m
}

export type StatusChange = {
  changeId: number
  did: string
  from: MemberStatus
  to: 'active' | 'suspended'
  changed: boolean
}

/** The DID of the member named by DID or domain (status changes go through @atmos/reputation). */
export async function memberDid(sql: Pool, who: string): Promise<string> {
  return (await findMember(sql, who)).did
}

/** Replaces the member's password: the old one stops working at once. Returns the new one (shown once). */
export async function rotatePassword(sql: Pool, who: string): Promise<{ username: string; password: string }> {
  const m = await findMember(sql, who)
  const password = generatePassword()
  const passwordHash = await hashPassword(password)
  const [updated] = await sql<{ username: string }[]>`
    update smtp_credentials set password_hash = ${passwordHash}, created_at = now(), last_used_at = null
    where member_id = ${m.id} and revoked_at is null
    returning username`
  if (updated) return { username: updated.username, password }
  await sql`insert into smtp_credentials (member_id, username, password_hash) values (${m.id}, ${m.domain}, ${passwordHash})`
  return { username: m.domain, password }
}

export function operatorActor(): string {
  return `operator:${process.env.USER ?? process.env.LOGNAME ?? 'cli'}`
}
