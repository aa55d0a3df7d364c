// Drops and re-creates the template test database, then applies every migration to it,
// so that a test run never inherits state from an earlier one.
import { quoteIdent, redactUrl, runMigrations } from '@atmos/db'
import postgres from 'postgres'
import { TEMPLATE_DATABASE_URL } from '../database.ts'

const name = decodeURIComponent(new URL(TEMPLATE_DATABASE_URL).pathname.slice(1))
const adminUrl = new URL(TEMPLATE_DATABASE_URL)
adminUrl.pathname = '/postgres'
const admin = postgres(adminUrl.toString(), { max: 1, onnotice: () => {} })
try {
  await admin.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`)
  // Throwaway databases of earlier runs that were killed before they could drop them.
  const stale = await admin<{ datname: string }[]>`select datname from pg_database where datname like 'atmos\\_t\\_%'`
  for (const { datname } of stale) await admin.unsafe(`drop database if exists ${quoteIdent(datname)} with (force)`)
} finally {
  await admin.end({ timeout: 5 })
}
const result = await runMigrations(TEMPLATE_DATABASE_URL, { createDatabase: true })
console.error(`test database ${redactUrl(TEMPLATE_DATABASE_URL)}: ${result.applied} migrations applied`)
