import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

// The NSID authority publishes the authoritative email.atmos.* schemas; a copy with its
// provenance sits in ../shared/lexicons-published beside the repository (in CI too). Ours
// must say the same thing: same content, whatever the order of keys or the whitespace.
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
const published = join(repoRoot, '../shared/lexicons-published')
const ours = join(repoRoot, 'lexicons')

const read = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8'))

/**
 * The published copy is the record as the authority's repository stores it: the schema plus
 * the record's own `$type` (com.atproto.lexicon.schema), which is no part of a lexicon
 * document (a schema file carrying it does not typecheck as one).
 */
function schemaOf(record: Record<string, unknown>): Record<string, unknown> {
  const { $type, ...schema } = record
  assert.equal($type, 'com.atproto.lexicon.schema')
  return schema
}

describe('lexicons/ match the published email.atmos.* schemas', () => {
  for (const nsid of ['email.atmos.attestation', 'email.atmos.defs']) {
    it(nsid, () => {
      const theirs = join(published, `${nsid}.json`)
      assert.ok(existsSync(theirs), `the published copy is missing: ${theirs}`)
      // deepStrictEqual compares objects by their keys and values, not by key order.
      const path = join(ours, ...nsid.split('.').slice(0, -1), `${nsid.split('.').at(-1)}.json`)
      assert.deepStrictEqual(read(path), schemaOf(read(theirs)))
    })
  }
})
