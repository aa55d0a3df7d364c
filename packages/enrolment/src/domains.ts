import type { MemberStatus, Pool } from '@atmos/db'
import { createDomainKeys, type NewDkimKey } from '@atmos/dkim'
import { generatePassword, hashPassword, type Keyring } from '@atmos/secrets'
import { audit } from './audit.ts'
import { normalizeDomain } from './names.ts'

// The domains members send as: adding one (its two DKIM keys, a credential scoped to it, the
// records to publish), listing them, removing one. Status changes of a domain go through
// @atmos/reputation (setDomainStatus), beside the member's; a domain enrolled through the
// admin's wizard starts pending and is activated by enrol.ts once its attestation holds.

const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/
/** A selector stem: the keys are `<stem>r` and `<stem>e`, so it leaves room for one character. */
const SELECTOR_STEM = /^[a-z0-9](?:[a-z0-9-]{0,60}[a-z0-9])?$/
export const DEFAULT_SELECTOR_STEM = 'atmos1'
export const ATTESTATION_COLLECTION = 'email.atmos.attestation'

export class DomainError extends Error {
  override name = 'DomainError'
}

/** A domain name as stored (lower-case A-labels, no trailing dot), or DomainError naming what was given. */
export function checkDomain(input: string): string {
  const domain = normalizeDomain(input)
  if (!DOMAIN.test(domain)) throw new DomainError(`not a domain name: ${input}`)
  return domain
}

export function checkSelectorStem(stem: string): string {
  if (!SELECTOR_STEM.test(stem)) {
    throw new DomainError(`not a DKIM selector stem (letters, digits, hyphens; at most 62): ${stem}`)
  }
  return stem
}

/** The `email.atmos.attestation` record the member writes under record key = the domain. */
export type AttestationRecord = {
  $type: typeof ATTESTATION_COLLECTION
  domain: string
  dkimSelectors: string[]
  relayMember: true
  createdAt: string
}

/** A domain taken by a member with its keys, before (or without) any credential. */
export type HeldDomain = {
  memberId: number
  did: string
  domainId: number
  domain: string
  /** RSA (`<stem>r`) then Ed25519 (`<stem>e`). */
  keys: [NewDkimKey, NewDkimKey]
  attestation: AttestationRecord
  /** Suppressions carried over from the domain's earlier holders. */
  copiedSuppressions: number
  /** The member_status_changes row that tells the labeler; notify it after the commit. */
  changeId: number
}

export type AddedDomain = HeldDomain & {
  username: string
  /** Shown once; only its hash is stored. */
  password: string
}

export function attestationRecord(domain: string, selectors: string[]): AttestationRecord {
  return {
    $type: ATTESTATION_COLLECTION,
    domain,
    dkimSelectors: selectors,
    relayMember: true,
    createdAt: new Date().toISOString(),
  }
}

/** The password is hashed before the transaction (scrypt is slow; no row is held meanwhile). */
export async function newCredentialSecret(): Promise<{ password: string; passwordHash: string }> {
  const password = generatePassword()
  return { password, passwordHash: await hashPassword(password) }
}

/**
 * Adds a domain to a member inside the caller's transaction, after the member row is locked
 * (so that concurrent adds count each other against the maximum): active at once, with a
 * credential scoped to it. Refuses a domain another member holds in the relay, one another
 * DID's attestation holds (verification_status), and a member already at `maxDomains`.
 */
export async function addDomainTx(
  tx: Pool,
  keyring: Keyring,
  input: {
    member: { id: number; did: string }
    domain: string
    stem: string
    maxDomains: number
    passwordHash: string
    password: string
    actor: string
    /** The history row's reason. */
    reason: string
  },
): Promise<AddedDomain> {
  const held = await holdDomainTx(tx, keyring, { ...input, status: 'active', credential: input.passwordHash })
  return { ...held, username: input.domain, password: input.password }
}

/**
 * Takes a domain for a member inside the caller's transaction (member row locked): its row
 * (`active`, warming from now, or `pending`, warming from its activation), both DKIM keys,
 * the suppressions of its earlier holders, the history and audit rows, and with `credential`
 * (a password hash) a credential scoped to it named after it.
 */
export async function holdDomainTx(
  tx: Pool,
  keyring: Keyring,
  input: {
    member: { id: number; did: string }
    domain: string
    stem: string
    maxDomains: number
    status: 'active' | 'pending'
    credential?: string | undefined
    actor: string
    reason: string
    /** Name the DID holding the domain in a refusal (the operator's CLI; not a member's page). */
    nameHolder?: boolean
    /** Added to the audit row's detail (the client's address of a web request). */
    auditDetail?: Record<string, unknown> | undefined
  },
): Promise<HeldDomain> {
  const { member, domain } = input
  const holder = await domainHolder(tx, domain, member, { nameHolder: input.nameHolder ?? true })
  if (holder) throw new DomainError(holder)
  const live = await tx<{ domain: string }[]>`
    select domain from domains where member_id = ${member.id} and removed_at is null order by domain`
  if (live.length >= input.maxDomains) {
    throw new DomainError(
      `${member.did} already holds ${live.length} domain${live.length === 1 ? '' : 's'} ` +
        `(${live.map((d) => d.domain).join(', ')}): at most ${input.maxDomains} a member (pool.maxDomainsPerMember)`,
    )
  }
  // Enrolled by an operator means active at once, warming from now; through the wizard, pending
  // (no relay sending) until its attestation holds.
  const [row] = await tx<{ id: number }[]>`
    insert into domains (member_id, domain, status, activated_at)
    values (${member.id}, ${domain}, ${input.status}, ${input.status === 'active' ? tx`now()` : null})
    returning id::int as id`
  const domainId = row!.id
  const keys = await createDomainKeys(tx, keyring, { memberId: member.id, domainId, domain, stem: input.stem })
  if (input.credential !== undefined) {
    // Usernames are unique among live credentials only: an earlier holder's revoked one keeps its row.
    const [taken] = await tx<{ id: number }[]>`
      select id::int as id from smtp_credentials where username = ${domain} and revoked_at is null`
    if (taken) {
      throw new DomainError(`SMTP credential ${taken.id} named ${domain} is still live; revoke it first`)
    }
    await tx`
      insert into smtp_credentials (member_id, domain_id, username, password_hash)
      values (${member.id}, ${domainId}, ${domain}, ${input.credential})`
  }
  // A recipient's choice about this domain's mail stands when the domain changes hands.
  const copied = await tx`
    insert into suppressions (member_id, domain_id, address, reason, detail, event_id, created_at, expires_at)
    select distinct on (s.address) ${member.id}::bigint, ${domainId}::bigint, s.address, s.reason,
           left('carried over from an earlier holder of ' || ${domain}::text || coalesce(': ' || s.detail, ''), 1000),
           s.event_id, s.created_at, s.expires_at
    from suppressions s join domains d on d.id = s.domain_id
    where d.domain = ${domain} and d.removed_at is not null
      and s.removed_at is null and (s.expires_at is null or s.expires_at > now())
    order by s.address, s.created_at
    on conflict (member_id, address) where removed_at is null do nothing`
  const [change] = await tx<{ id: number }[]>`
    insert into member_status_changes (member_id, domain_id, from_status, to_status, reason, actor)
    values (${member.id}, ${domainId}, null, ${input.status}, ${input.reason}, ${input.actor})
    returning id::int as id`
  const selectors = keys.map((k) => k.selector)
  const detail = {
    ...input.auditDetail,
    selectors,
    ...(input.credential !== undefined ? { username: domain } : {}),
    ...(input.status === 'pending' ? { status: 'pending' } : {}),
    copiedSuppressions: copied.count,
    changeId: change!.id,
  }
  // `::text::jsonb`: a parameter cast straight to jsonb is serialized by postgres.js as JSON a
  // second time (a jsonb string) unless the pool went through drizzle, which turns that off.
  await audit(tx, {
    actor: input.actor,
    action: 'domain.added',
    did: member.did,
    domain: domain,
    memberId: member.id,
    detail: detail,
  })
  return {
    memberId: member.id,
    did: member.did,
    domainId,
    domain,
    keys,
    attestation: attestationRecord(domain, selectors),
    copiedSuppressions: copied.count,
    changeId: change!.id,
  }
}

/**
 * Why `member` cannot take `domain` because someone else has it (a live domains row, of this
 * member or another; or another DID's attestation holds it), or null when it is free.
 * `nameHolder: false` words it for a member: an enrolment in the relay that is not published
 * yet is nobody else's business (the operator's CLI names the holder, the wizard does not).
 */
export async function domainHolder(
  sql: Pool,
  domain: string,
  member: { id?: number | undefined; did: string },
  opts: { nameHolder?: boolean } = {},
): Promise<string | null> {
  const nameHolder = opts.nameHolder ?? true
  const [held] = await sql<{ did: string; memberId: number }[]>`
    select m.did, m.id::int as "memberId" from domains d join members m on m.id = d.member_id
    where d.domain = ${domain} and d.removed_at is null`
  if (held) {
    return held.did === member.did
      ? `${member.did} already holds ${domain}`
      : nameHolder
        ? `${domain} is held in the relay by ${held.did}; a domain belongs to one account at a time`
        : `${domain} is held by another account; a domain belongs to one account at a time. If it is yours, ask the pool's operators`
  }
  const [claimed] = await sql<{ did: string }[]>`
    select did from verification_status where domain = ${domain} and holds and did <> ${member.did}`
  if (claimed) {
    return `${domain} is held by ${claimed.did} (its attestation for it verifies); a domain belongs to one account at a time`
  }
  return null
}

/** Adds a domain to the member with this DID (see addDomainTx). */
export async function addDomain(
  sql: Pool,
  keyring: Keyring,
  input: { did: string; domain: string; selector?: string | undefined; maxDomains: number; actor: string },
): Promise<AddedDomain> {
  const domain = checkDomain(input.domain)
  const stem = checkSelectorStem(input.selector ?? DEFAULT_SELECTOR_STEM)
  const secret = await newCredentialSecret()
  return withHeldDomain(domain, () =>
    sql.begin(async (tx) => {
      const [member] = await tx<{ id: number; did: string }[]>`
        select id::int as id, did from members where did = ${input.did} for update`
      if (!member) throw new DomainError(`no member ${input.did}`)
      return addDomainTx(tx as unknown as Pool, keyring, {
        member,
        domain,
        stem,
        maxDomains: input.maxDomains,
        ...secret,
        actor: input.actor,
        reason: `domain ${domain} added by operator`,
      })
    }),
  )
}

/** A concurrent add of the same domain loses on the unique index: said as the check would say it. */
export async function withHeldDomain<T>(domain: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (err) {
    const e = err as { code?: string; constraint_name?: string }
    if (e.code === '23505' && e.constraint_name === 'domains_domain_held_key') {
      throw new DomainError(
        `${domain} is held in the relay by another member; a domain belongs to one account at a time`,
      )
    }
    throw err
  }
}

export type RemovedDomain = {
  memberId: number
  did: string
  domain: string
  revokedCredentials: number
  retiredKeys: number
  changeId: number
  from: MemberStatus
}

/**
 * Gives a domain up: the row stays (removed_at, reason) so that old messages still
 * attribute; its scoped credentials are revoked and its keys retired at once. Recorded as a
 * change to 'suspended' of that domain (reason 'domain removed: …') so that the labeler
 * recomputes the DID's labels; notify it after the commit.
 */
export async function removeDomain(
  sql: Pool,
  input: string,
  reason: string,
  actor: string,
  opts: {
    /** Only when this member holds it (a member giving up its own domain); else DomainError as if no one did. */
    memberId?: number | undefined
    /** Added to the audit row's detail (the client's address of a web request). */
    auditDetail?: Record<string, unknown> | undefined
  } = {},
): Promise<RemovedDomain> {
  const domain = checkDomain(input)
  if (!reason.trim()) throw new DomainError('a removal needs a reason')
  return sql.begin(async (tx) => {
    // The member is checked on the locked row: a domain that moved to another account
    // between the caller's look and this statement is not removed from under its new holder.
    const [d] = await tx<{ id: number; memberId: number; did: string; status: MemberStatus }[]>`
      select d.id::int as id, d.member_id::int as "memberId", m.did, d.status
      from domains d join members m on m.id = d.member_id
      where d.domain = ${domain} and d.removed_at is null
        ${opts.memberId === undefined ? tx`` : tx`and d.member_id = ${opts.memberId}`}
      for update of d`
    if (!d) throw new DomainError(`no member holds ${domain} in the relay`)
    await tx`
      update domains set removed_at = now(), removed_reason = ${reason}, updated_at = now() where id = ${d.id}`
    const revoked = await tx`
      update smtp_credentials set revoked_at = now() where domain_id = ${d.id} and revoked_at is null`
    // Its API key goes with it (verifyApiKey refuses a removed domain's key anyway).
    await tx`update api_keys set revoked_at = now() where domain_id = ${d.id} and revoked_at is null`
    const retired = await tx`
      update dkim_keys set status = 'retired', retired_at = now() where domain_id = ${d.id} and status <> 'retired'`
    const [change] = await tx<{ id: number }[]>`
      insert into member_status_changes (member_id, domain_id, from_status, to_status, reason, actor)
      values (${d.memberId}, ${d.id}, ${d.status}, 'suspended', ${`domain removed: ${reason}`}, ${actor})
      returning id::int as id`
    await audit(tx as unknown as Pool, {
      actor,
      action: 'domain.removed',
      did: d.did,
      domain: domain,
      memberId: d.memberId,
      detail: {
        ...opts.auditDetail,
        reason,
        revokedCredentials: revoked.count,
        retiredKeys: retired.count,
        changeId: change!.id,
      },
    })
    return {
      memberId: d.memberId,
      did: d.did,
      domain,
      revokedCredentials: revoked.count,
      retiredKeys: retired.count,
      changeId: change!.id,
      from: d.status,
    }
  })
}

export type DomainRow = {
  domain: string
  did: string
  status: MemberStatus
  statusReason: string | null
  /** Milliseconds since the epoch. */
  activatedAt: number | null
  selectors: string[]
  usernames: string[]
}

/** Every domain held now (of one member when `did` is given), by member then name. */
export async function listDomains(sql: Pool, did?: string): Promise<DomainRow[]> {
  return sql<DomainRow[]>`
    select d.domain, m.did, d.status, d.status_reason as "statusReason",
      (extract(epoch from d.activated_at) * 1000)::float8 as "activatedAt",
      coalesce((select array_agg(k.selector order by k.selector desc) from dkim_keys k
                where k.domain_id = d.id and k.status = 'active'), '{}') as selectors,
      coalesce((select array_agg(c.username order by c.username) from smtp_credentials c
                where c.domain_id = d.id and c.revoked_at is null), '{}') as usernames
    from domains d join members m on m.id = d.member_id
    where d.removed_at is null ${did ? sql`and m.did = ${did}` : sql``}
    order by m.id, d.domain`
}
