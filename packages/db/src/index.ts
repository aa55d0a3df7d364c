export { createDb, createPool, type Db, type DbOptions, type Pool, type PoolTx, pingDb, type Tx } from './client.ts'
export { ensureDatabase, MIGRATIONS_FOLDER, quoteIdent, redactUrl, runMigrations } from './migrate.ts'
export { type PoolMessage, spoolPoolMessage } from './pool-mail.ts'
export * from './schema/index.ts'
