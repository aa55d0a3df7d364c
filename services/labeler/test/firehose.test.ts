import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { ingestCursors } from '@atmos/db'
import { type SignedLabel, verifyLabel } from '@atmos/labels'
import { createTestDatabase, goodMailZone, type TestDatabase, TestDnsServer } from '@atmos/testkit'
import { AtpAgent } from '@atproto/api'
import { TestNetworkNoAppView } from '@atproto/dev-env'
import { labelerConfigSchema } from '../src/config.ts'
import { LabelerService } from '../src/service.ts'
import { ATTESTATION, attestationRecord, eventually, labelerEnv, queryLabels } from './helpers.ts'

// The second ingest source: a real PDS's repo firehose (signed commits), with the DID
// resolved through the real PLC that @atproto/dev-env runs beside it.
describe('labeler ingest from a local PDS firehose', () => {
  let tdb: TestDatabase
  let dns: TestDnsServer
  let network: TestNetworkNoAppView
  let service: LabelerService
  let agent: AtpAgent
  let did: string
  let didKey: string

  before(async () => {
    // The PDS keeps its SQLite data under the temp folder: give it one of its own.
    process.env.TMPDIR = mkdtempSync(join(tmpdir(), 'atmos-pds-'))
    network = await TestNetworkNoAppView.create({})
    agent = new AtpAgent({ service: network.pds.url })
    await agent.createAccount({ email: 'alice@mail.test', handle: 'alice.test', password: 'correct horse battery' })
    did = agent.session!.did
    tdb = await createTestDatabase()
    dns = new TestDnsServer(goodMailZone('alice-mail.example', did))
    await dns.start()
    const setup = await labelerEnv({
      databaseUrl: tdb.url,
      jetstreamUrl: 'ws://127.0.0.1:9/unused',
      dnsPort: dns.port,
      plcUrl: network.plc.url,
    })
    didKey = setup.didKey
    const env = {
      ...setup.env,
      ATMOS_LABELER_INGEST_SOURCE: 'firehose',
      ATMOS_LABELER_INGEST_FIREHOSE_URL: network.pds.url,
    }
    service = await LabelerService.create(loadConfig(labelerConfigSchema, { env }))
    await service.start()
    await service.whenStarted()
    // A fresh labeler starts live. Wait until the subscription is up: new accounts emit
    // identity and account events that, though not ours, move the saved cursor.
    let n = 0
    await eventually(
      async () => {
        await new AtpAgent({ service: network.pds.url }).createAccount({
          email: `probe${n}@mail.test`,
          handle: `probe${n++}.test`,
          password: 'correct horse battery',
        })
        await new Promise((r) => setTimeout(r, 1200))
        const [row] = await service.ctx.db.select().from(ingestCursors)
        return row
      },
      30_000,
      'the firehose subscription',
    )
  })

  after(async () => {
    await service?.destroy()
    await dns?.close()
    await tdb?.drop()
    await network?.close()
  })

  it('labels an attestation written to the PDS, and negates when it is deleted', async () => {
    await agent.com.atproto.repo.createRecord({
      repo: did,
      collection: ATTESTATION,
      rkey: 'alice-mail.example',
      record: attestationRecord('alice-mail.example'),
    })
    const xrpc = service.xrpcUrl!
    const labels = await eventually(
      async () => {
        const l = await queryLabels(xrpc, did)
        return l.length ? l : undefined
      },
      30_000,
      'label from the firehose',
    )
    assert.deepEqual(
      labels.map((l) => [l.val, l.neg]),
      [['verified-mail-operator', undefined]],
    )
    const sig = Buffer.from(labels[0]!.sig.$bytes, 'base64')
    assert.equal(await verifyLabel({ ...(labels[0] as unknown as SignedLabel), sig }, didKey), true)

    await agent.com.atproto.repo.deleteRecord({ repo: did, collection: ATTESTATION, rkey: 'alice-mail.example' })
    await eventually(async () => ((await queryLabels(xrpc, did))[0]?.neg ? true : undefined), 30_000, 'negation')
  })
})
