import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { after, test } from 'node:test'
import { promisify } from 'node:util'
import { quoteIdent } from '@atmos/db'
import postgres from 'postgres'
import { TEMPLATE_DATABASE_URL, testDatabasePrefix } from '../src/database.ts'

// The test command's reset drops what earlier runs on its template left behind, and never a
// database of another run on the same server (a CI run beside a second checkout's tests lost
// its database mid-run when the reset dropped every throwaway database it found).

const run = promisify(execFile)
const server = new URL(TEMPLATE_DATABASE_URL)
server.pathname = '/postgres'
const admin = postgres(server.toString(), { max: 1, onnotice: () => {} })
const mine = `atmos_test_reset_${randomBytes(4).toString('hex')}`
const theirs = `atmos_test_other_${randomBytes(4).toString('hex')}`
const leftover = `${testDatabasePrefix(mine)}${randomBytes(6).toString('hex')}`
const live = `${testDatabasePrefix(theirs)}${randomBytes(6).toString('hex')}`

after(async () => {
  for (const name of [mine, leftover, live])
    await admin.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`)
  await admin.end({ timeout: 5 })
})

test("the reset drops its own template's leftovers and leaves another run's databases alone", async () => {
  await admin.unsafe(`create database ${quoteIdent(leftover)}`)
  await admin.unsafe(`create database ${quoteIdent(live)}`)
  const url = new URL(TEMPLATE_DATABASE_URL)
  url.pathname = `/${mine}`
  await run(process.execPath, [new URL('../src/bin/reset-test-database.ts', import.meta.url).pathname], {
    env: { ...process.env, ATMOS_TEST_DATABASE_URL: url.toString() },
  })
  const names = (
    await admin<{ datname: string }[]>`select datname from pg_database where datname in (${mine}, ${leftover}, ${live})`
  ).map((r) => r.datname)
  assert.deepEqual(names.sort(), [live, mine].sort())
})
