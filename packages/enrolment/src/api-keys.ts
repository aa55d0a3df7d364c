import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { MemberStatus, Pool } from '@atmos/db'
import { audit } from './audit.ts'
import { checkDomain, DomainError } from './domains.ts'
import { checkDid } from './members.ts'

// API keys for the HTTP send API: `Authorization: Bearer atmos_<key id>_<secret>`. A key is
// scoped to one domain of a member, and a domain has at most one live key: issuing a new one
// revokes the one before (rotation). The secret is shown once and never stored.
//
// Why a fast keyed hash and not scrypt (as for SMTP passwords): the secret is 256 bits from
// the CSPRNG, not something a person chose, so no guessing attack on a stolen hash can
// succeed however fast the hash is; a slow hash would only make every API request cost
// 0.2 s of CPU and hand an attacker a cheap way to burn it. HMAC-SHA256 keyed by the key id
// binds each hash to its row: a hash copied into another row does not verify there.

export const API_KEY_PREFIX = 'atmos_'
const KEY_ID_BYTES = 8
const SECRET_BYTES = 32
/** `atmos_` + 16 hex + `_` + 43 base64url: fixed lengths, so the pattern cannot backtrack. */
const API_KEY = /^atmos_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

export type IssuedApiKey = {
  keyId: string
  domain: string
  /** The whole key as the member pastes it (`atmos_<id>_<secret>`); shown once. */
  key: string
  /** The key this one replaced (now revoked), if any. */
  revokedKeyId: string | null
}

export type VerifiedApiKey = {
  keyId: string
  memberId: number
  did: string
  domainId: number
  domain: string
  /** The caller refuses to send for a suspended member or domain (MEMBER_SUSPENDED); pending ones too. */
  memberStatus: MemberStatus
  domainStatus: MemberStatus
}

function secretHash(keyId: string, secret: string): Buffer {
  return createHmac('sha256', `atmos-api-key\0${keyId}`).update(secret).digest()
}

/** The key id and secret of a presented key, or null when it is not one of ours in shape. */
export function parseApiKey(presented: string): { keyId: string; secret: string } | null {
  if (typeof presented !== 'string' || presented.length > 100) return null
  const m = API_KEY.exec(presented)
  return m ? { keyId: m[1]!, secret: m[2]! } : null
}

/**
 * Issues the API key of a domain the DID holds (revoking the domain's live key, if any, in
 * the same transaction), with an audit row naming only the key ids. A pending domain gets
 * none: keys are issued once the domain is verified and active. A suspended one may rotate
 * (to cut off a leaked key); verifyApiKey reports its status to the caller.
 */
export async function issueApiKey(
  sql: Pool,
  input: { did: string; domain: string; actor?: string; detail?: Record<string, unknown> },
): Promise<IssuedApiKey> {
  const did = checkDid(input.did)
  const domain = checkDomain(input.domain)
  const actor = input.actor ?? `admin:${did}`
  const keyId = randomBytes(KEY_ID_BYTES).toString('hex')
  const secret = randomBytes(SECRET_BYTES).toString('base64url')
  return sql.begin(async (tx) => {
    const t = tx as unknown as Pool
    // The domain row is the lock: two rotations at once end with one live key, not a unique-index error.
    const [d] = await t<{ id: number; memberId: number; status: MemberStatus }[]>`
      select d.id::int as id, d.member_id::int as "memberId", d.status
      from domains d join members m on m.id = d.member_id
      where m.did = ${did} and d.domain = ${domain} and d.removed_at is null
      for update of d`
    if (!d) throw new DomainError(`${did} does not hold ${domain}`)
    if (d.status === 'pending') {
      throw new DomainError(`${domain} is pending: an API key is issued once the domain is verified and active`)
    }
    const revoked = await t<{ keyId: string }[]>`
      update api_keys set revoked_at = now() where domain_id = ${d.id} and revoked_at is null
      returning key_id as "keyId"`
    await t`
      insert into api_keys (member_id, domain_id, key_id, secret_hash)
      values (${d.memberId}, ${d.id}, ${keyId}, ${secretHash(keyId, secret)})`
    const revokedKeyId = revoked[0]?.keyId ?? null
    const detail = { ...input.detail, keyId, ...(revokedKeyId ? { revokedKeyId } : {}) }
    await audit(t, {
      actor,
      action: revokedKeyId ? 'api_key.rotated' : 'api_key.issued',
      did: did,
      domain: domain,
      memberId: d.memberId,
      detail: detail,
    })
    return { keyId, domain, key: `${API_KEY_PREFIX}${keyId}_${secret}`, revokedKeyId }
  })
}

/** Revokes the domain's live API key (if any); true when one was revoked. Audited. */
export async function revokeApiKey(
  sql: Pool,
  input: { did: string; domain: string; actor?: string; detail?: Record<string, unknown> },
): Promise<boolean> {
  const did = checkDid(input.did)
  const domain = checkDomain(input.domain)
  return sql.begin(async (tx) => {
    const t = tx as unknown as Pool
    const rows = await t<{ keyId: string; memberId: number }[]>`
      update api_keys k set revoked_at = now()
      from domains d, members m
      where k.domain_id = d.id and d.member_id = m.id and m.did = ${did} and d.domain = ${domain}
        and d.removed_at is null and k.revoked_at is null
      returning k.key_id as "keyId", k.member_id::int as "memberId"`
    const [r] = rows
    if (!r) return false
    await audit(t, {
      actor: input.actor ?? `admin:${did}`,
      action: 'api_key.revoked',
      did: did,
      domain: domain,
      memberId: r.memberId,
      detail: { ...input.detail, keyId: r.keyId },
    })
    return true
  })
}

/** The live key's public id and dates for a domain the DID holds (what the account shows), or null. */
export async function liveApiKey(
  sql: Pool,
  did: string,
  domain: string,
): Promise<{ keyId: string; createdAt: Date; lastUsedAt: Date | null } | null> {
  // Epoch milliseconds: a pool made by drizzle parses no timestamps.
  const [k] = await sql<{ keyId: string; createdAt: number; lastUsedAt: number | null }[]>`
    select k.key_id as "keyId", (extract(epoch from k.created_at) * 1000)::float8 as "createdAt",
      (extract(epoch from k.last_used_at) * 1000)::float8 as "lastUsedAt"
    from api_keys k join domains d on d.id = k.domain_id join members m on m.id = d.member_id
    where m.did = ${did} and d.domain = ${domain} and d.removed_at is null and k.revoked_at is null`
  if (!k) return null
  return {
    keyId: k.keyId,
    createdAt: new Date(k.createdAt),
    lastUsedAt: k.lastUsedAt === null ? null : new Date(k.lastUsedAt),
  }
}

/** A hash to compare against when no row matched, so that a miss costs what a hit costs. */
const NO_ROW = Buffer.alloc(32)

/**
 * Who a presented API key (the bearer token as sent) belongs to, or null: malformed,
 * unknown, revoked, a wrong secret, or a domain given up. The comparison is constant-time.
 * Member and domain status are returned, not judged: refusing a suspended sender is the
 * send API's policy. Records last use (at most once a minute a key, to spare the row).
 */
export async function verifyApiKey(sql: Pool, presented: string): Promise<VerifiedApiKey | null> {
  const parsed = parseApiKey(presented)
  if (!parsed) return null
  const [row] = await sql<(VerifiedApiKey & { id: number; hash: Buffer })[]>`
    select k.id::int as id, k.key_id as "keyId", k.secret_hash as hash, k.member_id::int as "memberId", m.did,
      d.id::int as "domainId", d.domain, m.status as "memberStatus", d.status as "domainStatus"
    from api_keys k join domains d on d.id = k.domain_id join members m on m.id = k.member_id
    where k.key_id = ${parsed.keyId} and k.revoked_at is null and d.removed_at is null`
  const want = row?.hash ?? NO_ROW
  const got = secretHash(parsed.keyId, parsed.secret)
  const same = want.length === got.length && timingSafeEqual(want, got)
  if (!row || !same) return null
  await sql`
    update api_keys set last_used_at = now()
    where id = ${row.id} and (last_used_at is null or last_used_at < now() - interval '1 minute')`
  const { id: _id, hash: _hash, ...key } = row
  return key
}
