import { drizzle } from 'drizzle-orm/postgres-js'
import postgres from 'postgres'
import * as schema from './schema/index.ts'

export type DbOptions = {
  url: string
  poolMax?: number
  /** Milliseconds. */
  connectTimeout?: number
  /** Shown in pg_stat_activity, so an operator can tell the services apart. */
  applicationName?: string
}

export function createPool(opts: DbOptions) {
  return postgres(opts.url, {
    max: opts.poolMax ?? 10,
    connect_timeout: Math.max(1, Math.ceil((opts.connectTimeout ?? 5000) / 1000)),
    idle_timeout: 60,
    onnotice: () => {},
    connection: { application_name: opts.applicationName ?? 'atmos' },
  })
}

export type Pool = ReturnType<typeof createPool>
/** A transaction on the raw pool (`pool.begin(async (tx) => …)`). */
export type PoolTx = postgres.TransactionSql

/** The drizzle handle on a pool; the raw pool stays reachable as `db.$client`. */
export function createDb(opts: DbOptions | Pool) {
  const client = typeof opts === 'function' ? opts : createPool(opts)
  return drizzle({ client, schema, casing: 'snake_case' })
}

export type Db = ReturnType<typeof createDb>
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0]

/** Cheap round trip for readiness probes. */
export async function pingDb(db: Db): Promise<void> {
  await db.$client`select 1`
}
