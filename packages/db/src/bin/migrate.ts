#!/usr/bin/env node
// atmos-migrate [--create-database] [database-url]
// Applies the checked-in migrations; the URL defaults to $ATMOS_DATABASE_URL, then to the
// local default. Run by every service's deployment before it starts (a Job in Kubernetes).
import { parseArgs } from 'node:util'
import { redactUrl, runMigrations } from '../migrate.ts'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { 'create-database': { type: 'boolean', default: false } },
})
const url = positionals[0] ?? process.env.ATMOS_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/atmos'
try {
  const result = await runMigrations(url, { createDatabase: values['create-database'] })
  console.log(
    JSON.stringify({
      msg: 'migrations applied',
      database: redactUrl(url),
      applied: result.applied,
      total: result.total,
    }),
  )
} catch (err) {
  console.error(`migration failed on ${redactUrl(url)}: ${(err as Error).message}`)
  process.exit(1)
}
