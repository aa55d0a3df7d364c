import { createPrivateKey } from 'node:crypto'
import type { Pool } from '@atmos/db'
import { dkimTxtRecord, generateDkimKeyPair, type Keyring } from '@atmos/secrets'
import type { SigningKey } from './sign.ts'

/** What a sealed DKIM key is bound to: a sealed value copied to another row does not open. */
export const dkimSealContext = (domain: string, selector: string) => `dkim:${domain}:${selector}`

export type NewDkimKey = {
  id: number
  domain: string
  selector: string
  publicKey: string
  txtName: string
  txt: string
}

/** Generates a DKIM keypair, seals the private half and stores it active (inside the caller's transaction if given one). */
export async function createDkimKey(
  sql: Pool,
  keyring: Keyring,
  opts: { memberId: number | null; domain: string; selector: string },
): Promise<NewDkimKey> {
  const pair = await generateDkimKeyPair()
  const { kekId, sealed } = keyring.seal(pair.privateKeyPem, dkimSealContext(opts.domain, opts.selector))
  const [row] = await sql<{ id: number }[]>`
    insert into dkim_keys (member_id, domain, selector, algorithm, bits, public_key, private_key_sealed, kek_id, status, activated_at)
    values (${opts.memberId}, ${opts.domain}, ${opts.selector}, 'rsa-sha256', ${pair.bits}, ${pair.publicKey},
            ${sealed}, ${kekId}, 'active', now())
    returning id::int as id`
  return {
    id: row!.id,
    domain: opts.domain,
    selector: opts.selector,
    publicKey: pair.publicKey,
    txtName: `${opts.selector}._domainkey.${opts.domain}`,
    txt: dkimTxtRecord(pair.publicKey),
  }
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

type KeyRow = { domain: string; selector: string; kekId: string; sealed: Buffer }

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
 * Unsealed signing keys, cached for a short while: every message needs two, and a
 * rotation or retirement must take effect without a restart.
 */
export class SigningKeys {
  private readonly sql: Pool
  private readonly keyrings: SigningKeyrings
  private readonly ttlMs: number
  private readonly cache = new Map<string, { at: number; key: Promise<SigningKey | null> }>()

  constructor(sql: Pool, keyrings: SigningKeyrings, ttlMs = 60_000) {
    this.sql = sql
    this.keyrings = keyrings
    this.ttlMs = ttlMs
  }

  /** The member's newest active key, or null when it has none. */
  member(memberId: number): Promise<SigningKey | null> {
    return this.cached(`m:${memberId}`, async () => {
      const [row] = await this.sql<KeyRow[]>`
        select domain, selector, kek_id as "kekId", private_key_sealed as sealed from dkim_keys
        where member_id = ${memberId} and status = 'active'
        order by activated_at desc nulls last, id desc limit 1`
      if (!row) return null
      if (!this.keyrings.members) throw new Error("this process holds no members' key-encryption key")
      return open(this.keyrings.members, row)
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
        select domain, selector, kek_id as "kekId", private_key_sealed as sealed from dkim_keys
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

  private cached(id: string, load: () => Promise<SigningKey | null>): Promise<SigningKey | null> {
    const hit = this.cache.get(id)
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.key
    const key = load()
    this.cache.set(id, { at: Date.now(), key })
    // A failed or empty lookup is not remembered: the next message asks again.
    key.then(
      (k) => k ?? this.cache.delete(id),
      () => this.cache.delete(id),
    )
    return key
  }
}

function open(keyring: Keyring, row: KeyRow): SigningKey {
  const pem = keyring.unseal(row.kekId, row.sealed, dkimSealContext(row.domain, row.selector))
  const privateKey = createPrivateKey({ key: pem, format: 'pem' })
  pem.fill(0)
  return { domain: row.domain, selector: row.selector, privateKey }
}

/**
 * Re-seals every pool key (member_id null, any status) that is not yet under the pool's
 * KEK: opened with the relay's, sealed with the pool's current one, in one transaction.
 * Returns how many it moved. Idempotent: a second run finds none.
 */
export async function resealPoolKeys(sql: Pool, keyrings: { members: Keyring; pool: Keyring }): Promise<number> {
  return sql.begin(async (tx) => {
    const rows = await tx<(KeyRow & { id: number })[]>`
      select id::int as id, domain, selector, kek_id as "kekId", private_key_sealed as sealed
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
