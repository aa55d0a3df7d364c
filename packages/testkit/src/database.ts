import { createHash, randomBytes } from 'node:crypto'
import { quoteIdent, runMigrations } from '@atmos/db'
import postgres from 'postgres'

/**
 * The migrated template every test database is cloned from. The test command recreates
 * it from scratch before a run; each test process also migrates it (idempotent, under
 * the migration lock) so that one package's tests can run on their own.
 */
export const TEMPLATE_DATABASE_URL = process.env.ATMOS_TEST_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/atmos_test'

function withDatabase(url: string, name: string): string {
  const u = new URL(url)
  u.pathname = `/${name}`
  return u.toString()
}

function templateName(): string {
  return decodeURIComponent(new URL(TEMPLATE_DATABASE_URL).pathname.slice(1))
}

/**
 * The start of every throwaway database's name cloned from this template. The template's
 * own mark is in it so that the test command's reset drops what runs on this template left
 * behind, never the live databases of another run (a second checkout, a CI run) that uses
 * a template of its own on the same server.
 */
export const testDatabasePrefix = (template: string) =>
  `atmos_t_${createHash('sha256').update(template).digest('hex').slice(0, 6)}_`
export const TEST_DATABASE_PREFIX = testDatabasePrefix(templateName())

export type TestDatabase = { url: string; name: string; drop: () => Promise<void> }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A fresh, fully migrated database of its own for one test file; drop() removes it. */
export async function createTestDatabase(opts: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const name = `${TEST_DATABASE_PREFIX}${randomBytes(6).toString('hex')}`
  const admin = postgres(withDatabase(TEMPLATE_DATABASE_URL, 'postgres'), { max: 1, onnotice: () => {} })
  try {
    if (opts.migrated === false) {
      await admin.unsafe(`create database ${quoteIdent(name)}`)
    } else {
      await cloneTemplate(admin, name)
    }
  } finally {
    await admin.end({ timeout: 5 })
  }
  const url = withDatabase(TEMPLATE_DATABASE_URL, name)
  return {
    url,
    name,
    drop: async () => {
      const sql = postgres(withDatabase(TEMPLATE_DATABASE_URL, 'postgres'), { max: 1, onnotice: () => {} })
      try {
        await sql.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`)
      } finally {
        await sql.end({ timeout: 5 })
      }
    },
  }
}

let templateReady: Promise<unknown> | undefined

/** Brings the template up to the checked-in migrations, once per test process. */
function prepareTemplate(): Promise<unknown> {
  templateReady ??= runMigrations(TEMPLATE_DATABASE_URL, { createDatabase: true })
  return templateReady
}

async function cloneTemplate(admin: postgres.Sql, name: string): Promise<void> {
  const template = templateName()
  await prepareTemplate()
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.unsafe(`create database ${quoteIdent(name)} template ${quoteIdent(template)}`)
      return
    } catch (err) {
      const code = (err as { code?: string }).code
      // 55006: another clone or the migration holds the template open for a moment.
      if (code === '55006' && attempt < 50) {
        await sleep(100 + Math.random() * 200)
        continue
      }
      throw err
    }
  }
}
