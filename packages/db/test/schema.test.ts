import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { and, eq, isNull } from 'drizzle-orm'
import {
  createDb,
  type Db,
  domains,
  labelSigningKeys,
  labels,
  MIGRATIONS_FOLDER,
  members,
  suppressions,
  verificationStatus,
} from '../src/index.ts'

const pkg = fileURLToPath(new URL('..', import.meta.url))

/** drizzle wraps the driver's error; the constraint that fired is on its cause. */
async function violates(query: Promise<unknown>, constraint: string) {
  await assert.rejects(query, (err: Error & { cause?: { constraint_name?: string } }) => {
    assert.equal(err.cause?.constraint_name, constraint, String(err.cause ?? err))
    return true
  })
}

describe('schema', () => {
  let tdb: TestDatabase
  let db: Db
  before(async () => {
    tdb = await createTestDatabase()
    db = createDb({ url: tdb.url, poolMax: 2 })
  })
  after(async () => {
    await db.$client.end()
    await tdb.drop()
  })

  it('matches the checked-in migrations (run `pnpm --filter @atmos/db generate` after a change)', () => {
    const out = mkdtempSync(join(tmpdir(), 'atmos-drift-'))
    try {
      cpSync(MIGRATIONS_FOLDER, out, { recursive: true })
      const before = readdirSync(out).length
      execFileSync(
        join(pkg, 'node_modules/.bin/drizzle-kit'),
        [
          'generate',
          '--dialect',
          'postgresql',
          '--schema',
          './src/schema/index.ts',
          '--out',
          out,
          '--casing',
          'snake_case',
        ],
        { cwd: pkg, stdio: 'pipe' },
      )
      assert.equal(readdirSync(out).length, before, 'the schema has changes that no migration holds')
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  })

  it('keeps one member per DID, with a known status', async () => {
    await db.insert(members).values({ did: 'did:plc:aaa' })
    await violates(db.insert(members).values({ did: 'did:plc:aaa' }), 'members_did_key')
    await violates(
      db.insert(members).values({ did: 'did:plc:ddd', status: 'gone' as 'active' }),
      'members_status_check',
    )
  })

  it('lets one live row hold a domain, in lower case; removed rows of it may repeat', async () => {
    const [a] = await db.insert(members).values({ did: 'did:plc:dom-a' }).returning()
    const [b] = await db.insert(members).values({ did: 'did:plc:dom-b' }).returning()
    const [held] = await db.insert(domains).values({ memberId: a!.id, domain: 'held.example' }).returning()
    await violates(db.insert(domains).values({ memberId: b!.id, domain: 'held.example' }), 'domains_domain_held_key')
    await violates(db.insert(domains).values({ memberId: a!.id, domain: 'held.example' }), 'domains_domain_held_key')
    await violates(
      db.insert(domains).values({ memberId: b!.id, domain: 'Upper.example' }),
      'domains_domain_lower_check',
    )
    await violates(
      db.insert(domains).values({ memberId: b!.id, domain: 'odd.example', status: 'gone' as 'active' }),
      'domains_status_check',
    )
    // The domain moves: the old row is removed and stays; the new holder's row is the live one.
    await db
      .update(domains)
      .set({ removedAt: new Date(), removedReason: 'moved to did:plc:dom-b' })
      .where(eq(domains.id, held!.id))
    await db.insert(domains).values({ memberId: b!.id, domain: 'held.example' })
    await db.insert(domains).values({ memberId: a!.id, domain: 'held.example', removedAt: new Date() })
    const rows = await db.select().from(domains).where(eq(domains.domain, 'held.example'))
    assert.deepEqual(
      rows.map((r) => [r.memberId, r.removedAt === null]).sort(),
      [
        [a!.id, false],
        [a!.id, false],
        [b!.id, true],
      ].sort(),
    )
  })

  it('lets at most one DID hold a domain in verification_status, any number attest it without holding', async () => {
    const row = (did: string, holds: boolean) => ({
      did,
      domain: 'claimed.example',
      holds,
      lastOutcome: 'pass' as const,
      lastRunAt: new Date(),
    })
    await db.insert(verificationStatus).values(row('did:plc:holder', true))
    await violates(db.insert(verificationStatus).values(row('did:plc:rival', true)), 'verification_status_holder_key')
    await db.insert(verificationStatus).values(row('did:plc:rival', false))
    await db.insert(verificationStatus).values(row('did:plc:third', false))
    await violates(
      db.insert(verificationStatus).values(row('did:plc:rival', false)),
      'verification_status_did_domain_pk',
    )
    // The holder lets go; another may then hold it.
    await db
      .update(verificationStatus)
      .set({ holds: false })
      .where(and(eq(verificationStatus.did, 'did:plc:holder'), eq(verificationStatus.domain, 'claimed.example')))
    await db
      .update(verificationStatus)
      .set({ holds: true })
      .where(and(eq(verificationStatus.did, 'did:plc:rival'), eq(verificationStatus.domain, 'claimed.example')))
    // One DID may hold several domains.
    await db.insert(verificationStatus).values({ ...row('did:plc:rival', true), domain: 'second.example' })
  })

  it('holds one label row per (src, uri, cid, val), a null cid included', async () => {
    const [key] = await db.insert(labelSigningKeys).values({ didKey: 'did:key:zQ3sh' }).returning()
    const row = {
      src: 'did:plc:labeler',
      uri: 'did:plc:aaa',
      val: 'verified-mail-operator',
      cts: '2026-11-25T00:00:00.000Z',
      sig: Buffer.alloc(64),
      signingKeyId: key!.id,
    }
    await db.insert(labels).values({ ...row, seq: 1 })
    await violates(db.insert(labels).values({ ...row, seq: 2 }), 'labels_src_uri_cid_val_key')
    await db.insert(labels).values({ ...row, seq: 3, val: 'relay-member' })
  })

  it('allows one standing suppression per member and address, and a new one after removal', async () => {
    const [m] = await db.insert(members).values({ did: 'did:plc:sup' }).returning()
    const entry = { memberId: m!.id, address: 'x@y.example', reason: 'hard_bounce' as const }
    await db.insert(suppressions).values(entry)
    await violates(db.insert(suppressions).values(entry), 'suppressions_member_address_key')
    await db
      .update(suppressions)
      .set({ removedAt: new Date(), removedBy: 'test' })
      .where(and(eq(suppressions.memberId, m!.id), isNull(suppressions.removedAt)))
    await db.insert(suppressions).values({ ...entry, reason: 'complaint' })
  })
})
