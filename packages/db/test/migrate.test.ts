import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { hashPassword, verifyPassword } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { drizzle } from 'drizzle-orm/postgres-js'
import { migrate } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import { MIGRATIONS_FOLDER, runMigrations } from '../src/index.ts'

type Journal = { entries: { idx: number; tag: string }[] }
const journal = JSON.parse(readFileSync(`${MIGRATIONS_FOLDER}/meta/_journal.json`, 'utf8')) as Journal
const migrateBin = fileURLToPath(new URL('../src/bin/migrate.ts', import.meta.url))

const dbs: TestDatabase[] = []
after(async () => {
  await Promise.all(dbs.map((d) => d.drop()))
})

async function emptyDatabase() {
  const db = await createTestDatabase({ migrated: false })
  dbs.push(db)
  return db
}

async function tables(url: string): Promise<string[]> {
  const sql = postgres(url, { max: 1 })
  try {
    const rows = await sql<
      { tablename: string }[]
    >`select tablename from pg_tables where schemaname = 'public' order by 1`
    return rows.map((r) => r.tablename)
  } finally {
    await sql.end()
  }
}

/**
 * Migrates an empty database up to and including `lastTag` only: drizzle's migrator applies
 * what a folder's journal lists, so it is given a copy of the folder whose journal stops there.
 */
async function migrateUpTo(url: string, lastTag: string): Promise<void> {
  const last = journal.entries.findIndex((e) => e.tag === lastTag)
  assert.ok(last >= 0, `no migration ${lastTag}`)
  const folder = mkdtempSync(join(tmpdir(), 'atmos-migrations-'))
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  try {
    cpSync(MIGRATIONS_FOLDER, folder, { recursive: true })
    const trimmed = { ...journal, entries: journal.entries.slice(0, last + 1) }
    writeFileSync(join(folder, 'meta/_journal.json'), JSON.stringify(trimmed))
    await migrate(drizzle({ client: sql }), { migrationsFolder: folder })
  } finally {
    await sql.end({ timeout: 5 })
    rmSync(folder, { recursive: true, force: true })
  }
}

function runMigrateProcess(url: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [migrateBin, url], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
    })
    child.stderr.on('data', (d) => {
      out += d
    })
    child.on('exit', (code) => resolve({ code, out }))
  })
}

describe('migrations', () => {
  it('apply to an empty database, and a second run applies nothing and fails nothing', async () => {
    const db = await emptyDatabase()
    const first = await runMigrations(db.url)
    assert.equal(first.applied, journal.entries.length)
    const second = await runMigrations(db.url)
    assert.deepEqual(second, { applied: 0, total: journal.entries.length })
    const names = await tables(db.url)
    for (const t of [
      'members',
      'attestations',
      'dkim_keys',
      'labels',
      'ingest_cursors',
      'verification_runs',
      'verification_checks',
      'messages',
      'message_recipients',
      'delivery_attempts',
      'feedback_events',
      'suppressions',
      'smtp_credentials',
      'inbound_messages',
      'quarantined_reports',
    ]) {
      assert.ok(names.includes(t), `table ${t} missing`)
    }
  })

  it('run safely from several processes at once: each migration applied exactly once', async () => {
    const db = await emptyDatabase()
    const results = await Promise.all([1, 2, 3].map(() => runMigrateProcess(db.url)))
    for (const r of results) assert.equal(r.code, 0, r.out)
    const applied = results.map((r) => JSON.parse(r.out.trim().split('\n').pop() as string).applied as number)
    assert.equal(
      applied.reduce((a, b) => a + b, 0),
      journal.entries.length,
      `applied per process: ${applied}`,
    )
    const sql = postgres(db.url, { max: 1 })
    try {
      const [row] = await sql`select count(*)::int as n from drizzle.__drizzle_migrations`
      assert.equal(row?.n, journal.entries.length)
    } finally {
      await sql.end()
    }
  })

  it('create the database when asked and it does not exist', async () => {
    const db = await emptyDatabase()
    await db.drop()
    const result = await runMigrations(db.url, { createDatabase: true })
    assert.equal(result.applied, journal.entries.length)
  })

  it('fail with a clear error when Postgres is unreachable', async () => {
    const r = await runMigrateProcess('postgres://root@127.0.0.1:1/atmos')
    assert.equal(r.code, 1)
    assert.match(r.out, /migration failed on postgres:\/\/root@127\.0\.0\.1:1\/atmos: .*ECONNREFUSED/)
  })
})

describe('migration 0009_domains: from one domain per member to domains', () => {
  it('keeps every row, makes each member’s domain a domains row, links what it owned, and the credential still works', async () => {
    const db = await emptyDatabase()
    await migrateUpTo(db.url, '0008_inbound_auth_and_raw_retention')
    const sql = postgres(db.url, { max: 1, onnotice: () => {} })
    try {
      const password = 'the member’s relay password'
      const NUL = Buffer.alloc(1)
      const hash = await hashPassword(password)
      const activated = new Date(Date.now() - 10 * 86_400_000)
      // Today's rows, written in today's (0008) schema.
      const [member] = await sql<{ id: string }[]>`
        insert into members (did, domain, status, activated_at, enrolled_at)
        values ('did:plc:migrated', 'old.example', 'active', ${activated}, ${activated}) returning id::text`
      const memberId = member!.id
      // A second member whose label was negated: it verified once, and holds nothing now.
      const [lapsed] = await sql<{ id: string }[]>`
        insert into members (did, domain, status) values ('did:plc:lapsed', 'lapsed.example', 'suspended')
        returning id::text`
      await sql`insert into smtp_credentials (member_id, username, password_hash)
                values (${memberId}, 'old.example', ${hash})`
      await sql`insert into dkim_keys (member_id, domain, selector, public_key, private_key_sealed, kek_id, status)
                values (${memberId}, 'old.example', 'atmos1', 'MIIB', ${NUL}, 'k1', 'active'),
                       (null, 'pool.example', 'atmos1', 'MIIC', ${NUL}, 'k1', 'active')`
      const msgs = await sql<{ id: string }[]>`
        insert into messages (member_id, envelope_from, return_path, size, body, expires_at)
        values (${memberId}, 'a@old.example', 'b+x@bounces.example', 1, ${NUL}, now() + interval '1 day'),
               (${memberId}, 'b@old.example', 'b+y@bounces.example', 1, ${NUL}, now() + interval '1 day'),
               (null, 'fbl-ingest@pool.example', 'b+z@bounces.example', 1, ${NUL}, now() + interval '1 day')
        returning id::text`
      await sql`insert into send_volume (member_id, day, recipients, messages)
                values (${memberId}, current_date, 7, 3), (${memberId}, current_date - 1, 40, 20)`
      await sql`insert into suppressions (member_id, address, reason) values (${memberId}, 'gone@r.example', 'hard_bounce')`
      const [key] = await sql<{ id: string }[]>`
        insert into label_signing_keys (did_key) values ('did:key:zQ3shmigrated') returning id::text`
      const label = (seq: number, uri: string, val: string, neg: boolean) => sql`
        insert into labels (seq, src, uri, val, neg, cts, sig, signing_key_id)
        values (${seq}, 'did:plc:labeler', ${uri}, ${val}, ${neg}, '2026-11-01T00:00:00.000Z', ${NUL}, ${key!.id})`
      await label(1, 'did:plc:migrated', 'verified-mail-operator', false)
      await label(2, 'did:plc:migrated', 'relay-member', false)
      await label(3, 'did:plc:lapsed', 'verified-mail-operator', true)
      // Before this rule two DIDs could both pass for one domain: the one that passed last holds it.
      await label(4, 'did:plc:rival', 'verified-mail-operator', false)
      await sql`insert into verification_status (did, domain, last_outcome, last_run_at, last_pass_at)
                values ('did:plc:migrated', 'old.example', 'pass', now(), now()),
                       ('did:plc:lapsed', 'lapsed.example', 'fail', now(), now() - interval '20 days'),
                       ('did:plc:rival', 'old.example', 'pass', now(), now() - interval '2 days')`
      await sql`insert into attestations (did, rkey, domain, dkim_selectors, relay_member, record_created_at)
                values ('did:plc:migrated', 'self', 'old.example', '{atmos1}', true, '2026-11-01T00:00:00.000Z')`
      const count = async (table: string) =>
        Number((await sql.unsafe<{ n: string }[]>(`select count(*)::text as n from ${table}`))[0]!.n)
      const tablesKept = ['members', 'smtp_credentials', 'dkim_keys', 'messages', 'send_volume', 'suppressions']
      const before = Object.fromEntries(
        await Promise.all(
          [...tablesKept, 'labels', 'verification_status', 'attestations'].map(async (t) => [t, await count(t)]),
        ),
      )

      const applied = await runMigrations(db.url)
      // 0009 and whatever came after it; the checks below are about 0009's data moves.
      const since0009 = journal.entries.length - journal.entries.findIndex((e) => e.tag === '0009_domains')
      assert.deepEqual(applied, { applied: since0009, total: journal.entries.length })

      for (const [table, n] of Object.entries(before)) assert.equal(await count(table), n, `${table} keeps its rows`)
      const doms = await sql<
        { id: string; member_id: string; domain: string; status: string; activated_at: Date; removed_at: Date | null }[]
      >`select id::text, member_id::text, domain, status, activated_at, removed_at from domains order by id`
      assert.deepEqual(
        doms.map((d) => [d.member_id, d.domain, d.status, d.removed_at]),
        [
          [memberId, 'old.example', 'active', null],
          [lapsed!.id, 'lapsed.example', 'active', null],
        ],
      )
      const domainId = doms[0]!.id
      assert.equal(
        doms[0]!.activated_at.getTime(),
        activated.getTime(),
        'the domain warms from the member’s activation',
      )

      const [cred] = await sql<{ domain_id: string; password_hash: string }[]>`
        select domain_id::text, password_hash from smtp_credentials where username = 'old.example'`
      assert.equal(cred!.domain_id, domainId, 'the credential is scoped to the domain it sent as')
      assert.equal(cred!.password_hash, hash)
      assert.equal(await verifyPassword(password, cred!.password_hash), true, 'the kept hash still authenticates')
      assert.deepEqual(
        [...(await sql`select domain, domain_id::text from dkim_keys order by id`)],
        [
          { domain: 'old.example', domain_id: domainId },
          { domain: 'pool.example', domain_id: null },
        ],
        'the member’s key belongs to its domain, the pool’s to none',
      )
      assert.deepEqual(
        (await sql<{ id: string; domain_id: string | null }[]>`select id::text, domain_id::text from messages`)
          .map((m) => [m.id, m.domain_id])
          .sort(),
        [
          [msgs[0]!.id, domainId],
          [msgs[1]!.id, domainId],
          [msgs[2]!.id, null],
        ].sort(),
      )
      assert.deepEqual(
        [...(await sql`select member_id::text, domain_id::text, recipients from send_volume order by day`)],
        [
          { member_id: memberId, domain_id: domainId, recipients: 40 },
          { member_id: memberId, domain_id: domainId, recipients: 7 },
        ],
      )
      assert.deepEqual(
        [...(await sql`select member_id::text, domain_id::text, address from suppressions`)],
        [{ member_id: memberId, domain_id: domainId, address: 'gone@r.example' }],
      )
      assert.deepEqual(
        [...(await sql`select did, domain, holds from verification_status order by did`)],
        [
          { did: 'did:plc:lapsed', domain: 'lapsed.example', holds: false },
          { did: 'did:plc:migrated', domain: 'old.example', holds: true },
          { did: 'did:plc:rival', domain: 'old.example', holds: false },
        ],
        'a DID holds its domain while its verified-mail-operator label stands, one DID a domain',
      )
      assert.deepEqual(
        [...(await sql`select did, rkey, domain, state, deleted from attestations`)],
        [{ did: 'did:plc:migrated', rkey: 'self', domain: 'old.example', state: 'valid', deleted: false }],
      )
      const audit = await sql<{ actor: string; action: string; did: string; domain: string; member_id: string }[]>`
        select actor, action, did, domain, member_id::text from audit_log order by member_id`
      assert.deepEqual(
        audit.map((a) => [a.actor, a.action, a.did, a.domain, a.member_id]),
        [
          ['migration', 'domain.added', 'did:plc:migrated', 'old.example', memberId],
          ['migration', 'domain.added', 'did:plc:lapsed', 'lapsed.example', lapsed!.id],
        ],
      )
      const [col] = await sql`select count(*)::int as n from information_schema.columns
                              where table_name = 'members' and column_name = 'domain'`
      assert.equal(col!.n, 0, 'members.domain is gone')
      // The new constraints hold over the migrated rows: the domain cannot be taken twice.
      await assert.rejects(
        sql`insert into domains (member_id, domain) values (${lapsed!.id}, 'old.example')`,
        (err: { constraint_name?: string }) => err.constraint_name === 'domains_domain_held_key',
      )
    } finally {
      await sql.end({ timeout: 5 })
    }
  })
})
