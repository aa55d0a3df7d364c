import assert from 'node:assert/strict'
import { it } from 'node:test'
import Database from 'better-sqlite3'

// The local PDS that later tests run keeps its data in better-sqlite3, a native addon.
// It must have been compiled from source against this Node's headers (scripts/toolchain.sh
// sets npm_config_nodedir), not against the machine's Node 20 and not from a download.
it('better-sqlite3 is built for the Node that runs the tests, and works', () => {
  assert.match(process.versions.node, /^22\./)
  const db = new Database(':memory:')
  try {
    db.exec('create table t (v text)')
    db.prepare('insert into t values (?)').run('atmos')
    const row = db.prepare('select v, sqlite_version() as version from t').get() as { v: string; version: string }
    assert.equal(row.v, 'atmos')
    assert.match(row.version, /^3\./)
  } finally {
    db.close()
  }
})
