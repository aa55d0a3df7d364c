import { randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { quoteIdent } from '@atmos/db'
import { createTestDatabase, TEMPLATE_DATABASE_URL, TEST_DATABASE_PREFIX, type TestDatabase } from '@atmos/testkit'
import postgres from 'postgres'
import { LocalNetwork, type LocalNetworkOptions } from '../src/network.ts'

export const POOL = { domain: 'pool.localnet.example', bounceDomain: 'bounces.pool.localnet.example' }

/** A database name of its own on the test server for the PLC directory, dropped by `drop`. */
export function plcDatabase(): { url: string; drop: () => Promise<void> } {
  const name = `${TEST_DATABASE_PREFIX}plc_${randomBytes(5).toString('hex')}`
  const url = new URL(TEMPLATE_DATABASE_URL)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: async () => {
      const admin = new URL(TEMPLATE_DATABASE_URL)
      admin.pathname = '/postgres'
      const sql = postgres(admin.toString(), { max: 1, onnotice: () => {} })
      try {
        await sql.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`)
      } finally {
        await sql.end({ timeout: 5 })
      }
    },
  }
}

export type Fixture = {
  network: LocalNetwork
  database: TestDatabase
  plc: { url: string; drop: () => Promise<void> }
  stateDir: string
  options: LocalNetworkOptions
  close: () => Promise<void>
}

/** A started network on ports 0 with a temporary state directory and databases of its own. */
export async function startNetwork(
  opts: { inbound?: { host: string; port: number }; database?: TestDatabase; pool?: LocalNetworkOptions['pool'] } = {},
): Promise<Fixture> {
  const database = opts.database ?? (await createTestDatabase())
  const plc = plcDatabase()
  const stateDir = mkdtempSync(join(tmpdir(), 'atmos-localnet-'))
  const options: LocalNetworkOptions = {
    stateDir,
    plcDatabaseUrl: plc.url,
    databaseUrl: database.url,
    pool: opts.pool ?? POOL,
    inbound: opts.inbound ?? { host: '127.0.0.1', port: 9 },
  }
  const network = new LocalNetwork(options)
  await network.start()
  const fixture: Fixture = {
    network,
    database,
    plc,
    stateDir,
    options,
    // The network a test put in its place (a restart) is the one stopped.
    close: async () => {
      await fixture.network.stop()
      await plc.drop()
      if (!opts.database) await database.drop()
    },
  }
  return fixture
}

/** Polls `check` until it returns a value (not undefined), or fails after `ms`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
