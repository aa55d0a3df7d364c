import type { Db, Tx } from '@atmos/db'

/** The database handle or a transaction on it: every write here can join the caller's transaction. */
export type Executor = Db | Tx

/** postgres-js returns bigint and numeric columns as strings; figures here are small enough for a number. */
export function num(value: unknown): number {
  if (value === null || value === undefined) return 0
  const n = Number(value)
  return Number.isFinite(n) ? n : 0
}
