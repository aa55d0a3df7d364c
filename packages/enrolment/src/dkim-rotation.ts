import type { DKIM_ALGORITHMS, MemberStatus, Pool } from '@atmos/db'
import { createDomainKeys, type NewDkimKey } from '@atmos/dkim'
import { dkimTxtRecord, type Keyring } from '@atmos/secrets'
import { audit } from './audit.ts'
import { checkDomain, checkSelectorStem, DomainError } from './domains.ts'
import { checkDid } from './members.ts'

// DKIM key rotation of a member's domain, without a moment in which mail is signed by a key
// receivers cannot find: a new pair (RSA `<stem>r`, Ed25519 `<stem>e`) is issued pending
// under the next stem (atmos1 → atmos2) and signs nothing; the member publishes its records;
// once DNS serves them (the caller checks) and the attestation names the new selectors,
// completeRotation makes the new pair active and retires the old in one transaction. The
// relay signs with a domain's active keys (@atmos/dkim SigningKeys, cached a minute), so it
// signs with the new pair from then on. The old records stay published until mail signed
// with the old keys can no longer be in flight (the relay's delivery.maxAge).

export class RotationError extends DomainError {
  override name = 'RotationError'
}

export type RotationKey = {
  selector: string
  algorithm: (typeof DKIM_ALGORITHMS)[number]
  /** `<selector>._domainkey.<domain>` */
  txtName: string
  /** `v=DKIM1; k=…; p=…` */
  txt: string
}

export type RotationState = {
  domain: string
  domainId: number
  memberId: number
  domainStatus: MemberStatus
  /** The keys signing now, RSA first. */
  active: RotationKey[]
  /** The rotation under way: the new keys, RSA first, or null. */
  pending: RotationKey[] | null
  /** When the rotation under way began. */
  startedAt: Date | null
  /** When the last rotation completed (the old keys' retirement), or null. */
  lastRotatedAt: Date | null
  /** The selectors that rotation retired: their records may go once nothing signed by them is in flight. */
  lastRetired: string[]
}

type KeyRow = {
  selector: string
  algorithm: (typeof DKIM_ALGORITHMS)[number]
  publicKey: string
  status: 'active' | 'pending' | 'retired'
  /** Milliseconds since the epoch (a pool made by drizzle parses no timestamps). */
  createdAt: number
  retiredAt: number | null
}

const view = (domain: string, k: Pick<KeyRow, 'selector' | 'algorithm' | 'publicKey'>): RotationKey => ({
  selector: k.selector,
  algorithm: k.algorithm,
  txtName: `${k.selector}._domainkey.${domain}`,
  txt: dkimTxtRecord(k.publicKey, k.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa'),
})

const RSA_FIRST = (a: { algorithm: string }, b: { algorithm: string }) =>
  Number(b.algorithm === 'rsa-sha256') - Number(a.algorithm === 'rsa-sha256')

async function heldDomain(sql: Pool, did: string, domain: string, lock: boolean) {
  const [d] = await sql<{ id: number; memberId: number; status: MemberStatus }[]>`
    select d.id::int as id, d.member_id::int as "memberId", d.status
    from domains d join members m on m.id = d.member_id
    where m.did = ${did} and d.domain = ${domain} and d.removed_at is null
    ${lock ? sql`for update of d` : sql``}`
  if (!d) throw new RotationError(`${did} does not hold ${domain}`)
  return d
}

type HeldRow = { id: number; memberId: number; status: MemberStatus }
type RotationInput = { did: string; domain: string; actor?: string | undefined }

/**
 * Runs one step of a rotation in a transaction with the domain's row locked (two steps of
 * the same domain never interleave), after checking the names and that the DID holds it.
 */
function lockedStep<T>(
  sql: Pool,
  input: RotationInput,
  step: (t: Pool, ctx: { did: string; domain: string; actor: string; d: HeldRow }) => Promise<T>,
): Promise<T> {
  const did = checkDid(input.did)
  const domain = checkDomain(input.domain)
  const actor = input.actor ?? `admin:${did}`
  return sql.begin(async (tx) => {
    const t = tx as unknown as Pool
    return step(t, { did, domain, actor, d: await heldDomain(t, did, domain, true) })
  }) as Promise<T>
}

/** A DID's domain's keys and its rotation under way, if any. Throws RotationError if the DID does not hold it. */
export async function rotationState(sql: Pool, didInput: string, domainInput: string): Promise<RotationState> {
  const did = checkDid(didInput)
  const domain = checkDomain(domainInput)
  const d = await heldDomain(sql, did, domain, false)
  return stateOf(sql, domain, d)
}

async function stateOf(
  sql: Pool,
  domain: string,
  d: { id: number; memberId: number; status: MemberStatus },
): Promise<RotationState> {
  const rows = await sql<KeyRow[]>`
    select selector, algorithm, public_key as "publicKey", status,
      (extract(epoch from created_at) * 1000)::float8 as "createdAt",
      (extract(epoch from retired_at) * 1000)::float8 as "retiredAt"
    from dkim_keys where domain_id = ${d.id}`
  const active = rows.filter((k) => k.status === 'active').sort(RSA_FIRST)
  const pending = rows.filter((k) => k.status === 'pending').sort(RSA_FIRST)
  const retired = rows.map((k) => k.retiredAt ?? 0)
  const last = Math.max(0, ...retired)
  return {
    domain,
    domainId: d.id,
    memberId: d.memberId,
    domainStatus: d.status,
    active: active.map((k) => view(domain, k)),
    pending: pending.length ? pending.map((k) => view(domain, k)) : null,
    startedAt: pending.length ? new Date(Math.min(...pending.map((k) => k.createdAt))) : null,
    lastRotatedAt: last ? new Date(last) : null,
    lastRetired: last
      ? rows
          .filter((k) => k.retiredAt === last)
          .sort(RSA_FIRST)
          .map((k) => k.selector)
      : [],
  }
}

/**
 * The stem after the current one: its trailing number plus one (`atmos1` → `atmos2`), or
 * `2` appended when it has none; never one whose selectors the domain has used before (a
 * selector names one key for good: caches and old signatures refer to it).
 */
export function nextStem(current: string, used: ReadonlySet<string>): string {
  let digits = 0
  while (digits < current.length && /[0-9]/.test(current[current.length - 1 - digits]!)) digits++
  const base = current.slice(0, current.length - digits)
  let n = digits ? Number(current.slice(current.length - digits)) + 1 : 2
  for (;;) {
    const stem = checkSelectorStem(`${base}${n}`)
    if (!used.has(`${stem}r`) && !used.has(`${stem}e`)) return stem
    n++
  }
}

/** The stem of a domain's active keys (`<stem>r`, `<stem>e`); a migrated single key's selector is its own stem. */
function stemOf(active: RotationKey[]): string {
  const rsa = active.find((k) => k.algorithm === 'rsa-sha256')?.selector ?? active[0]?.selector
  if (!rsa) throw new RotationError('the domain has no active DKIM key to rotate')
  return rsa.endsWith('r') && rsa.length > 1 ? rsa.slice(0, -1) : rsa
}

/**
 * Starts a rotation: issues the domain's new pair, pending, under the next stem. One
 * rotation at a time a domain: while one is under way it is returned as it is (`started`
 * false), never a second pair. Refused for a pending domain (its first keys are not even
 * published yet). Audited.
 */
export async function startRotation(
  sql: Pool,
  keyring: Keyring,
  input: { did: string; domain: string; actor?: string; detail?: Record<string, unknown> },
): Promise<RotationState & { started: boolean; keys: NewDkimKey[] }> {
  return lockedStep(sql, input, async (t, { did, domain, actor, d }) => {
    if (d.status === 'pending') {
      throw new RotationError(`${domain} is still being enrolled: its keys are rotated once it is active`)
    }
    const before = await stateOf(t, domain, d)
    if (before.pending) return { ...before, started: false, keys: [] }
    // Every selector ever used for this name, by any holder: (domain, selector) is unique.
    const used = await t<{ selector: string }[]>`select selector from dkim_keys where domain = ${domain}`
    const stem = nextStem(stemOf(before.active), new Set(used.map((u) => u.selector)))
    const keys = await createDomainKeys(t, keyring, {
      memberId: d.memberId,
      domainId: d.id,
      domain,
      stem,
      status: 'pending',
    })
    await audit(t, {
      actor,
      action: 'dkim.rotation_started',
      did: did,
      domain: domain,
      memberId: d.memberId,
      detail: { ...input.detail, from: before.active.map((k) => k.selector), to: keys.map((k) => k.selector) },
    })
    return { ...(await stateOf(t, domain, d)), started: true, keys }
  })
}

/**
 * Completes the rotation under way: the new pair becomes active and the old pair retired,
 * in one transaction, so that the relay signs with one pair or the other, never neither.
 * The caller has seen the new records in DNS and written the attestation naming them.
 * Returns the selectors switched from and to. Audited.
 */
export async function completeRotation(
  sql: Pool,
  input: {
    did: string
    domain: string
    /** The pending selectors the caller checked in DNS: refused if the rotation changed meanwhile. */
    expect?: string[]
    actor?: string
    detail?: Record<string, unknown>
  },
): Promise<{ domain: string; from: string[]; to: string[] }> {
  return lockedStep(sql, input, async (t, { did, domain, actor, d }) => {
    const pending = await t<{ selector: string }[]>`
      select selector from dkim_keys where domain_id = ${d.id} and status = 'pending' order by selector desc`
    if (!pending.length) throw new RotationError(`no key rotation of ${domain} is under way`)
    const to = pending.map((p) => p.selector).sort()
    if (input.expect && [...input.expect].sort().join() !== to.join()) {
      throw new RotationError(`the key rotation of ${domain} changed meanwhile (now ${to.join(', ')}): check again`)
    }
    const retired = await t<{ selector: string }[]>`
      update dkim_keys set status = 'retired', retired_at = now()
      where domain_id = ${d.id} and status = 'active' returning selector`
    await t`
      update dkim_keys set status = 'active', activated_at = now() where domain_id = ${d.id} and status = 'pending'`
    const from = retired.map((r) => r.selector).sort()
    await audit(t, {
      actor,
      action: 'dkim.rotated',
      did: did,
      domain: domain,
      memberId: d.memberId,
      detail: { ...input.detail, from, to },
    })
    return { domain, from, to }
  })
}

/**
 * Abandons the rotation under way: its pending keys, which never signed anything, are
 * deleted (their private halves with them). False when none was under way. Audited.
 */
export async function cancelRotation(
  sql: Pool,
  input: { did: string; domain: string; actor?: string; detail?: Record<string, unknown> },
): Promise<boolean> {
  return lockedStep(sql, input, async (t, { did, domain, actor, d }) => {
    const gone = await t<{ selector: string }[]>`
      delete from dkim_keys where domain_id = ${d.id} and status = 'pending' returning selector`
    if (!gone.length) return false
    await audit(t, {
      actor,
      action: 'dkim.rotation_cancelled',
      did: did,
      domain: domain,
      memberId: d.memberId,
      detail: { ...input.detail, selectors: gone.map((g) => g.selector).sort() },
    })
    return true
  })
}
