import { createPrivateKey } from 'node:crypto'
import type { DKIM_ALGORITHMS, Pool } from '@atmos/db'
import { dkimTxtRecord, generateDkimKeyPair, generateEd25519DkimKeyPair, type Keyring } from '@atmos/secrets'
import type { SigningKey } from './sign.ts'

/** What a sealed DKIM key is bound to: a sealed value copied to another row does not open. */
export const dkimSealContext = (domain: string, selector: string) => `dkim:${domain}:${selector}`

export type DkimAlgorithm = (typeof DKIM_ALGORITHMS)[number]

export type NewDkimKey = {
  id: number
  domain: string
  selector: string
  algorithm: DkimAlgorithm
  publicKey: string
  txtName: string
  txt: string
}

/**
 * Generates a DKIM keypair of the algorithm asked for (RSA-2048 unless told), seals the
 * private half bound to its domain and selector, and stores it active (inside the caller's
 * transaction if given one), or pending: a rotation's new key, which signs nothing until
 * its record is published and the rotation completes.
 */
export async function createDkimKey(
  sql: Pool,
  keyring: Keyring,
  opts: {
    memberId: number | null
    domainId?: number | null
    domain: string
    selector: string
    algorithm?: DkimAlgorithm
    status?: 'active' | 'pending' | undefined
  },
): Promise<NewDkimKey> {
  const algorithm = opts.algorithm ?? 'rsa-sha256'
  const status = opts.status ?? 'active'
  const ed25519 = algorithm === 'ed25519-sha256'
  const pair = ed25519 ? await generateEd25519DkimKeyPair() : await generateDkimKeyPair()
  const { kekId, sealed } = keyring.seal(pair.privateKeyPem, dkimSealContext(opts.domain, opts.selector))
  const [row] = await sql<{ id: number }[]>`
    insert into dkim_keys (member_id, domain_id, domain, selector, algorithm, bits, public_key, private_key_sealed, kek_id, status, activated_at)
    values (${opts.memberId}, ${opts.domainId ?? null}, ${opts.domain}, ${opts.selector}, ${algorithm}, ${pair.bits},
            ${pair.publicKey}, ${sealed}, ${kekId}, ${status}, ${status === 'active' ? sql`now()` : null})
    returning id::int as id`
  return {
    id: row!.id,
    domain: opts.domain,
    selector: opts.selector,
    algorithm,
    publicKey: pair.publicKey,
    txtName: `${opts.selector}._domainkey.${opts.domain}`,
    txt: dkimTxtRecord(pair.publicKey, ed25519 ? 'ed25519' : 'rsa'),
  }
}

/** The selectors of a new member domain's two keys: `<stem>r` (RSA) and `<stem>e` (Ed25519). */
export function domainSelectors(stem: string): { rsa: string; ed25519: string } {
  return { rsa: `${stem}r`, ed25519: `${stem}e` }
}

/**
 * A member domain's two keys, both active (or both pending, for a rotation): RSA-2048 at `<stem>r`, which every receiver
 * verifies, and Ed25519 at `<stem>e` (RFC 8463), which receivers that know it prefer. Run it
 * inside the transaction that creates the domain.
 */
export async function createDomainKeys(
  sql: Pool,
  keyring: Keyring,
  opts: { memberId: number; domainId: number; domain: string; stem: string; status?: 'active' | 'pending' | undefined },
): Promise<[NewDkimKey, NewDkimKey]> {
  const selectors = domainSelectors(opts.stem)
  const base = { memberId: opts.memberId, domainId: opts.domainId, domain: opts.domain, status: opts.status }
  // One after the other: inside a transaction the connection runs one statement at a time anyway.
  const rsa = await createDkimKey(sql, keyring, { ...base, selector: selectors.rsa, algorithm: 'rsa-sha256' })
  const ed = await createDkimKey(sql, keyring, { ...base, selector: selectors.ed25519, algorithm: 'ed25519-sha256' })
  return [rsa, ed]
}

/** The newest active pool key for a domain (member_id null), or null. */
export async function activePoolKey(
  sql: Pool,
  domain: string,
): Promise<{ selector: string; publicKey: string } | null> {
  const [row] = await sql<{ selector: string; publicKey: string }[]>`
    select selector, public_key as "publicKey" from dkim_keys
    where member_id is null and domain = ${domain} and status = 'active'
    order by activated_at desc nulls last, id desc limit 1`
  return row ?? null
}

type KeyRow = { domain: string; selector: string; algorithm: DkimAlgorithm; kekId: string; sealed: Buffer }

/**
 * The key-encryption keys a process holds. Members' DKIM keys are sealed under the relay's
 * (`relay.kekFile`), the pool's under its own (`pool.kekFile`): a process that signs only as
 * the pool (fbl-ingest, the relay's delivery role) is given only the pool's, and so cannot
 * open any member's key.
 */
export type SigningKeyrings = { members?: Keyring | undefined; pool?: Keyring | undefined }

/** A pool key that this process cannot open; the message names the command that fixes it. */
export class PoolKeyUnavailableError extends Error {
  override name = 'PoolKeyUnavailableError'
}

/**
 * Unsealed signing keys, cached for a short while: every message needs three, and a
 * rotation or retirement must take effect without a restart.
 */
export class SigningKeys {
  private readonly sql: Pool
  private readonly keyrings: SigningKeyrings
  private readonly ttlMs: number
  private readonly cache = new Map<string, { at: number; key: Promise<SigningKey | SigningKey[] | null> }>()

  constructor(sql: Pool, keyrings: SigningKeyrings, ttlMs = 60_000) {
    this.sql = sql
    this.keyrings = keyrings
    this.ttlMs = ttlMs
  }

  /**
   * Every active key of a member domain (its RSA key first, then its Ed25519 key; a domain
   * migrated from one key per member has its one RSA key), or none. A message from the domain
   * is signed by all of them.
   */
  domain(domainId: number): Promise<SigningKey[]> {
    return this.cached(`d:${domainId}`, async () => {
      const rows = await this.sql<KeyRow[]>`
        select domain, selector, algorithm, kek_id as "kekId", private_key_sealed as sealed from dkim_keys
        where domain_id = ${domainId} and member_id is not null and status = 'active'
        order by (algorithm = 'rsa-sha256') desc, activated_at desc nulls last, id desc`
      if (!rows.length) return []
      const keyring = this.keyrings.members
      if (!keyring) throw new Error("this process holds no members' key-encryption key")
      return rows.map((row) => open(keyring, row))
    })
  }

  /**
   * The pool's newest active key for its domain, or null before `relay keys init`. A key
   * sealed under the relay's KEK (before the pool had a KEK of its own) opens only where
   * that KEK is held, until `relay keys reseal-pool` moves it under the pool's.
   */
  pool(domain: string): Promise<SigningKey | null> {
    return this.cached(`p:${domain}`, async () => {
      const [row] = await this.sql<KeyRow[]>`
        select domain, selector, algorithm, kek_id as "kekId", private_key_sealed as sealed from dkim_keys
        where member_id is null and domain = ${domain} and status = 'active'
        order by activated_at desc nulls last, id desc limit 1`
      if (!row) return null
      const { pool, members } = this.keyrings
      if (pool?.has(row.kekId)) return open(pool, row)
      if (members?.has(row.kekId)) return open(members, row)
      throw new PoolKeyUnavailableError(
        `the pool DKIM key ${row.selector}._domainkey.${row.domain} is sealed under key-encryption key ${row.kekId}, ` +
          `which ${pool ? 'is not in the pool KEK file' : 'this process does not hold (no pool KEK file)'}: ` +
          'run `relay keys reseal-pool` (or `relay keys init`) where the relay KEK is, then restart',
      )
    })
  }

  private cached<T extends SigningKey | SigningKey[] | null>(id: string, load: () => Promise<T>): Promise<T> {
    const hit = this.cache.get(id)
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.key as Promise<T>
    const key = load()
    this.cache.set(id, { at: Date.now(), key })
    // A failed or empty lookup is not remembered: the next message asks again.
    key.then(
      (k) => (k === null || (Array.isArray(k) && !k.length)) && this.cache.delete(id),
      () => this.cache.delete(id),
    )
    return key
  }
}

function open(keyring: Keyring, row: KeyRow): SigningKey {
  const pem = keyring.unseal(row.kekId, row.sealed, dkimSealContext(row.domain, row.selector))
  const privateKey = createPrivateKey({ key: pem, format: 'pem' })
  pem.fill(0)
  return { domain: row.domain, selector: row.selector, algorithm: row.algorithm, privateKey }
}

/**
 * Re-seals every pool key (member_id null, any status) that is not yet under the pool's
 * KEK: opened with the relay's, sealed with the pool's current one, in one transaction.
 * Returns how many it moved. Idempotent: a second run finds none.
 */
export async function resealPoolKeys(sql: Pool, keyrings: { members: Keyring; pool: Keyring }): Promise<number> {
  return sql.begin(async (tx) => {
    const rows = await tx<(KeyRow & { id: number })[]>`
      select id::int as id, domain, selector, algorithm, kek_id as "kekId", private_key_sealed as sealed
      from dkim_keys where member_id is null for update`
    let moved = 0
    for (const row of rows) {
      if (keyrings.pool.has(row.kekId)) continue
      const context = dkimSealContext(row.domain, row.selector)
      const pem = keyrings.members.unseal(row.kekId, row.sealed, context)
      const { kekId, sealed } = keyrings.pool.seal(pem, context)
      pem.fill(0)
      await tx`update dkim_keys set private_key_sealed = ${sealed}, kek_id = ${kekId} where id = ${row.id}`
      moved++
    }
    return moved
  })
}
