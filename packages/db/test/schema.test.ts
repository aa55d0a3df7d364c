import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { and, eq, isNull } from 'drizzle-orm'
import { createDb, type Db, labelSigningKeys, labels, MIGRATIONS_FOLDER, members, suppressions } from '../src/index.ts'

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

  it('keeps one member per DID and per domain, domains in lower case', async () => {
    await db.insert(members).values({ did: 'did:plc:aaa', domain: 'a.example' })
    await violates(db.insert(members).values({ did: 'did:plc:aaa', domain: 'b.example' }), 'members_did_key')
    await violates(db.insert(members).values({ did: 'did:plc:bbb', domain: 'a.example' }), 'members_domain_key')
    await violates(db.insert(members).values({ did: 'did:plc:ccc', domain: 'C.example' }), 'members_domain_lower_check')
    await violates(
      db.insert(members).values({ did: 'did:plc:ddd', domain: 'd.example', status: 'gone' as 'active' }),
      'members_status_check',
    )
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
    const [m] = await db.insert(members).values({ did: 'did:plc:sup', domain: 'sup.example' }).returning()
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
