import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createDb, type Db } from '@atmos/db'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import { type LabelSigner, LabelWriter } from '../src/labels/writer.ts'

// label.changed: a label issued or negated about a member's DID is written to the member's
// webhooks outbox in the transaction that stores it; a DID that is no member's, or a member
// without an endpoint for it, gets nothing.

describe('label.changed webhook events', () => {
  let tdb: TestDatabase
  let db: Db
  let signer: LabelSigner

  before(async () => {
    tdb = await createTestDatabase()
    db = createDb({ url: tdb.url, poolMax: 4 })
    const keypair = await Secp256k1Keypair.create()
    signer = { keypair, src: keypair.did() }
  })
  after(async () => {
    await db.$client.end()
    await tdb.drop()
  })

  it('writes one event per label issued or negated, with the value, neg and the reason', async () => {
    const did = 'did:plc:labelhooks'
    const [m] = await db.$client<{ id: string }[]>`
      insert into members (did, status, activated_at) values (${did}, 'active', now()) returning id::text`
    await db.$client`
      insert into webhook_endpoints (member_id, url, events, secret_sealed, kek_id)
      values (${m!.id}, 'https://hooks.example.net/l', ${['label.changed']}, ${Buffer.alloc(40)}, 'k')`
    const writer = new LabelWriter(db, signer)
    await writer.reconcile(did, new Map([['verified-mail-operator', { held: true }]]), 'all checks passed')
    await writer.reconcile(did, new Map([['verified-mail-operator', { held: true }]]), 'all checks passed')
    await writer.reconcile(did, new Map([['verified-mail-operator', { held: false }]]), 'DMARC p=none')
    await writer.reconcile('did:plc:nomember', new Map([['verified-mail-operator', { held: true }]]), 'passed')
    const rows = await db.$client<{ type: string; member_id: string; payload: Record<string, unknown> }[]>`
      select e.type, e.member_id::text, e.payload from webhook_events e
      join webhook_deliveries d on d.event_id = e.id order by e.id`
    assert.deepEqual(
      rows.map((r) => [r.type, r.member_id, r.payload.did, r.payload.val, r.payload.neg, r.payload.reason]),
      [
        ['label.changed', m!.id, did, 'verified-mail-operator', false, 'all checks passed'],
        ['label.changed', m!.id, did, 'verified-mail-operator', true, 'DMARC p=none'],
      ],
    )
  })
})
