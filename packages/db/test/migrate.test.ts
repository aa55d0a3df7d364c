import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import postgres from 'postgres'
import { MIGRATIONS_FOLDER, runMigrations } from '../src/index.ts'

const journal = JSON.parse(readFileSync(`${MIGRATIONS_FOLDER}/meta/_journal.json`, 'utf8')) as { entries: unknown[] }
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
