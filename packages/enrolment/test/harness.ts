import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'
import { createPool, type Pool } from '@atmos/db'
import { createKeyringFile, type Keyring, loadKeyring } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'

/** A DID of the plc form from a short tag. */
export const did = (tag: string) => `did:plc:${tag.padEnd(24, 'z')}`

/**
 * A fresh test database and a key-encryption keyring for one test file, made in `before`
 * and dropped in `after`; read `sql`, `keyring` and `url` inside the tests.
 */
export function enrolmentHarness(): { readonly sql: Pool; readonly keyring: Keyring; readonly url: string } {
  let tdb: TestDatabase | undefined
  let sql: Pool | undefined
  let keyring: Keyring | undefined
  before(async () => {
    tdb = await createTestDatabase()
    sql = createPool({ url: tdb.url, poolMax: 4 })
    const kek = join(mkdtempSync(join(tmpdir(), 'atmos-enrolment-')), 'kek')
    createKeyringFile(kek)
    keyring = loadKeyring(kek)
  })
  after(async () => {
    await sql?.end({ timeout: 5 })
    await tdb?.drop()
  })
  return {
    get sql() {
      return sql!
    },
    get keyring() {
      return keyring!
    },
    get url() {
      return tdb!.url
    },
  }
}
