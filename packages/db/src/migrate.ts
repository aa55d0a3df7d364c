import { fileURLToPath } from 'node:url'
import { drizzle } from 'drizzle-orm/postgres-js'
import { migrate } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../migrations', import.meta.url))

/**
 * Session-level advisory lock key held while migrating (the bytes of "atmosmig"), so that
 * several services starting at once apply the migrations exactly once, one after another.
 */
export const MIGRATION_LOCK_KEY = 0x61746d6f736d6967n

export type MigrateResult = { applied: number; total: number }

/**
 * Applies the checked-in migrations. Idempotent; safe to run from several processes at
 * once: each takes the advisory lock, and the ones that wait find nothing left to apply.
 */
export async function runMigrations(url: string, opts: { createDatabase?: boolean } = {}): Promise<MigrateResult> {
  if (opts.createDatabase) await ensureDatabase(url)
  // One connection, so that the lock and the migration share a session.
  const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'atmos-migrate' } })
  try {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`
    try {
      const before = await countApplied(sql)
      await migrate(drizzle({ client: sql }), { migrationsFolder: MIGRATIONS_FOLDER })
      const after = await countApplied(sql)
      return { applied: after - before, total: after }
    } finally {
      await sql`select pg_advisory_unlock(${MIGRATION_LOCK_KEY.toString()}::bigint)`
    }
  } finally {
    await sql.end({ timeout: 5 })
  }
}

async function countApplied(sql: postgres.Sql): Promise<number> {
  // Two statements: a query naming a table that does not exist yet fails at parse time.
  const [exists] = await sql`select to_regclass('drizzle.__drizzle_migrations') is not null as present`
  if (!exists?.present) return 0
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from drizzle.__drizzle_migrations`
  return row?.n ?? 0
}

/** Creates the database named in the URL when it does not exist (connecting to `postgres`). */
export async function ensureDatabase(url: string): Promise<boolean> {
  const target = new URL(url)
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''))
  if (!name) throw new Error(`database URL names no database: ${redactUrl(url)}`)
  const admin = new URL(url)
  admin.pathname = '/postgres'
  const sql = postgres(admin.toString(), { max: 1, onnotice: () => {} })
  try {
    const [row] = await sql`select 1 as present from pg_database where datname = ${name}`
    if (row) return false
    try {
      await sql.unsafe(`create database ${quoteIdent(name)}`)
    } catch (err) {
      // Another process created it between our look and our create.
      if ((err as { code?: string }).code !== '42P04') throw err
      return false
    }
    return true
  } finally {
    await sql.end({ timeout: 5 })
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

/** A database URL fit for logs: the password replaced. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '<unparseable url>'
  }
}
