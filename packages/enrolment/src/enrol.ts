import type { DKIM_ALGORITHMS, MemberStatus, Pool } from '@atmos/db'
import type { NewDkimKey } from '@atmos/dkim'
import { dkimTxtRecord, type Keyring } from '@atmos/secrets'
import { audit } from './audit.ts'
import {
  attestationRecord,
  checkDomain,
  checkSelectorStem,
  DEFAULT_SELECTOR_STEM,
  DomainError,
  type HeldDomain,
  holdDomainTx,
  withHeldDomain,
} from './domains.ts'
import { checkDid, rotatePassword } from './members.ts'

// Enrolment by the member, through the admin's wizard: a signed-in account names a domain and
// becomes a `pending` member (nothing is relayed for it) holding the domain `pending` with its
// two DKIM keys; once the labeler finds its attestation for the domain holding, `activate`
// makes the domain (and a pending member) active, which starts the domain's warming; then
// the member is given a credential scoped to the domain.

export type Enrolment = HeldDomain & {
  memberStatus: MemberStatus
  domainStatus: MemberStatus
  /** False when the member already held the domain pending (the wizard resumed). */
  created: boolean
}

/**
 * Starts (or resumes) the enrolment of `domain` by the account `did`: creates the member as
 * pending if it is new, takes the domain pending and issues its keys. Resuming returns the
 * keys already issued (never new ones: records may already be published). Refuses a domain
 * another account holds, a suspended member, and a member at its maximum of domains.
 */
export async function startEnrolment(
  sql: Pool,
  keyring: Keyring,
  input: {
    did: string
    domain: string
    handle?: string | undefined
    selector?: string | undefined
    maxDomains: number
    actor?: string
    /** Added to the audit row's detail (the client's address of a web request). */
    auditDetail?: Record<string, unknown> | undefined
  },
): Promise<Enrolment> {
  const did = checkDid(input.did)
  const domain = checkDomain(input.domain)
  const stem = checkSelectorStem(input.selector ?? DEFAULT_SELECTOR_STEM)
  const actor = input.actor ?? `admin:${did}`
  return withHeldDomain(domain, () =>
    sql.begin(async (tx) => {
      const t = tx as unknown as Pool
      await t`
        insert into members (did, handle, status) values (${did}, ${input.handle ?? null}, 'pending')
        on conflict (did) do nothing`
      const [member] = await t<{ id: number; status: MemberStatus }[]>`
        select id::int as id, status from members where did = ${did} for update`
      if (!member) throw new DomainError(`no member ${did}`)
      if (member.status === 'suspended') {
        throw new DomainError(`${did} is suspended; an operator must reinstate it before it enrols a domain`)
      }
      const resumed = await heldEnrolment(t, did, domain)
      if (resumed) return { ...resumed, memberStatus: member.status, created: false }
      const held = await holdDomainTx(t, keyring, {
        member: { id: member.id, did },
        domain,
        stem,
        maxDomains: input.maxDomains,
        status: 'pending',
        actor,
        reason: `enrolment of ${domain} started by ${did}`,
        // A member's wizard: another member's unpublished enrolment is not named.
        nameHolder: false,
        auditDetail: input.auditDetail,
      })
      return { ...held, memberStatus: member.status, domainStatus: 'pending' as const, created: true }
    }),
  )
}

type KeyRow = { id: number; selector: string; algorithm: (typeof DKIM_ALGORITHMS)[number]; publicKey: string }

/**
 * The enrolment of a domain the DID holds now (pending or not), with its active keys (RSA
 * first), or null. What the wizard shows when it resumes.
 */
export async function heldEnrolment(
  sql: Pool,
  did: string,
  domain: string,
): Promise<(HeldDomain & { domainStatus: MemberStatus }) | null> {
  const [d] = await sql<{ id: number; memberId: number; status: MemberStatus; changeId: number | null }[]>`
    select d.id::int as id, d.member_id::int as "memberId", d.status,
      (select max(c.id)::int from member_status_changes c where c.domain_id = d.id) as "changeId"
    from domains d join members m on m.id = d.member_id
    where m.did = ${did} and d.domain = ${domain} and d.removed_at is null`
  if (!d) return null
  const rows = await sql<KeyRow[]>`
    select id::int as id, selector, algorithm, public_key as "publicKey" from dkim_keys
    where domain_id = ${d.id} and status = 'active'
    order by (algorithm = 'rsa-sha256') desc, selector`
  const keys = rows.map(
    (k): NewDkimKey => ({
      id: k.id,
      domain,
      selector: k.selector,
      algorithm: k.algorithm,
      publicKey: k.publicKey,
      txtName: `${k.selector}._domainkey.${domain}`,
      txt: dkimTxtRecord(k.publicKey, k.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa'),
    }),
  )
  return {
    memberId: d.memberId,
    did,
    domainId: d.id,
    domain,
    // A domain migrated from one key per member has one key; new ones have two.
    keys: keys as [NewDkimKey, NewDkimKey],
    attestation: attestationRecord(
      domain,
      keys.map((k) => k.selector),
    ),
    copiedSuppressions: 0,
    changeId: d.changeId ?? 0,
    domainStatus: d.status,
  }
}

export class NotVerifiedError extends DomainError {
  override name = 'NotVerifiedError'
}

/** A recorded status change the caller announces to the labeler after the commit. */
export type StatusChange = { did: string; status: MemberStatus; reason: string; changeId: number }

export type Activation = {
  did: string
  domain: string
  domainId: number
  /** False when the domain was active already (nothing changed). */
  activated: boolean
  /** True when the member went from pending to active with it. */
  memberActivated: boolean
  /** Announce each with @atmos/reputation's notifyStatusChange (the outbox re-sends a lost one). */
  changes: StatusChange[]
}

/**
 * Activates a domain the DID holds pending, once the labeler finds the DID's attestation for
 * it holding (verification_status.holds): the domain starts warming now, and a pending member
 * becomes active with it. Refuses before then (NotVerifiedError), and for a suspended member
 * or domain (only an operator reinstates). Idempotent.
 */
export async function activateDomain(
  sql: Pool,
  input: { did: string; domain: string; actor?: string; auditDetail?: Record<string, unknown> | undefined },
): Promise<Activation> {
  const did = checkDid(input.did)
  const domain = checkDomain(input.domain)
  const actor = input.actor ?? `admin:${did}`
  return sql.begin(async (tx) => {
    const t = tx as unknown as Pool
    const [m] = await t<{ id: number; status: MemberStatus }[]>`
      select id::int as id, status from members where did = ${did} for update`
    if (!m) throw new DomainError(`no member ${did}`)
    const [d] = await t<{ id: number; status: MemberStatus }[]>`
      select id::int as id, status from domains
      where member_id = ${m.id} and domain = ${domain} and removed_at is null for update`
    if (!d) throw new DomainError(`${did} does not hold ${domain}`)
    if (m.status === 'suspended') throw new DomainError(`${did} is suspended; only an operator reinstates it`)
    if (d.status === 'suspended') throw new DomainError(`${domain} is suspended; only an operator reinstates it`)
    const [v] = await t<{ holds: boolean }[]>`
      select holds from verification_status where did = ${did} and domain = ${domain}`
    if (!v?.holds) {
      throw new NotVerifiedError(
        `the attestation of ${did} for ${domain} does not verify yet: publish the records, write the attestation, ` +
          'and wait for the labeler to verify it',
      )
    }
    const base = { did, domain, domainId: d.id }
    if (d.status === 'active' && m.status === 'active') {
      return { ...base, activated: false, memberActivated: false, changes: [] }
    }
    const changes: StatusChange[] = []
    if (d.status === 'pending') {
      const reason = `${domain} verified: enrolment complete`
      await t`
        update domains set status = 'active', status_reason = null, activated_at = coalesce(activated_at, now()),
          updated_at = now() where id = ${d.id}`
      const [c] = await t<{ id: number }[]>`
        insert into member_status_changes (member_id, domain_id, from_status, to_status, reason, actor)
        values (${m.id}, ${d.id}, 'pending', 'active', ${reason}, ${actor}) returning id::int as id`
      await audit(t, {
        actor,
        action: 'domain.activated',
        did: did,
        domain: domain,
        memberId: m.id,
        detail: { ...input.auditDetail, from: 'pending', to: 'active', changeId: c!.id },
      })
      changes.push({ did, status: 'active', reason, changeId: c!.id })
    }
    if (m.status === 'pending') {
      const reason = `enrolled with ${domain}`
      await t`
        update members set status = 'active', status_reason = null, activated_at = coalesce(activated_at, now()),
          updated_at = now() where id = ${m.id}`
      const [c] = await t<{ id: number }[]>`
        insert into member_status_changes (member_id, from_status, to_status, reason, actor)
        values (${m.id}, 'pending', 'active', ${reason}, ${actor}) returning id::int as id`
      await audit(t, {
        actor,
        action: 'member.activated',
        did: did,
        domain: domain,
        memberId: m.id,
        detail: { ...input.auditDetail, from: 'pending', to: 'active', changeId: c!.id },
      })
      changes.push({ did, status: 'active', reason, changeId: c!.id })
    }
    return { ...base, activated: d.status === 'pending', memberActivated: m.status === 'pending', changes }
  })
}

/**
 * The SMTP credential of an active domain the DID holds, scoped to it (username = the
 * domain): created when it has none, otherwise given a new password (the old one stops
 * working at once). The password is returned once; the audit row names only the credential.
 */
export async function issueCredential(
  sql: Pool,
  input: { did: string; domain: string; actor?: string; auditDetail?: Record<string, unknown> },
): Promise<{ username: string; password: string }> {
  const did = checkDid(input.did)
  const domain = checkDomain(input.domain)
  const [d] = await sql<{ status: MemberStatus; memberStatus: MemberStatus }[]>`
    select d.status, m.status as "memberStatus" from domains d join members m on m.id = d.member_id
    where m.did = ${did} and d.domain = ${domain} and d.removed_at is null`
  if (!d) throw new DomainError(`${did} does not hold ${domain}`)
  if (d.status !== 'active' || d.memberStatus !== 'active') {
    throw new DomainError(
      `${domain} is ${d.status !== 'active' ? d.status : `held by a ${d.memberStatus} member`}: ` +
        'credentials are issued once the domain is verified and active',
    )
  }
  const [one] = await rotatePassword(sql, domain, input.actor ?? `admin:${did}`, input.auditDetail)
  if (!one) throw new DomainError(`no credential was issued for ${domain}`)
  return one
}
