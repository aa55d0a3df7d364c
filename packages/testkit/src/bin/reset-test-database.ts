// Drops and re-creates the template test database, then applies every migration to it,
// so that a test run never inherits state from an earlier one.
import { quoteIdent, redactUrl, runMigrations } from '@atmos/db'
import postgres from 'postgres'
import { TEMPLATE_DATABASE_URL, TEST_DATABASE_PREFIX } from '../database.ts'

const name = decodeURIComponent(new URL(TEMPLATE_DATABASE_URL).pathname.slice(1))
const adminUrl = new URL(TEMPLATE_DATABASE_URL)
adminUrl.pathname = '/postgres'
const admin = postgres(adminUrl.toString(), { max: 1, onnotice: () => {} })
try {
  await admin.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`)
  // Throwaway databases of earlier runs on this template that were killed before they could
  // drop them; another template's (another checkout's run on this server) are left alone.
  const pattern = `${TEST_DATABASE_PREFIX.replaceAll('_', '\\_')}%`
  const stale = await admin<{ datname: string }[]>`select datname from pg_database where datname like ${pattern}`
  for (const { datname } of stale) await admin.unsafe(`drop database if exists ${quoteIdent(datname)} with (force)`)
} finally {
  await admin.end({ timeout: 5 })
}
const result = await runMigrations(TEMPLATE_DATABASE_URL, { createDatabase: true })
console.error(`test database ${redactUrl(TEMPLATE_DATABASE_URL)}: ${result.applied} migrations applied`)
