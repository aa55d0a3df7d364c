import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { verificationChecks, verificationRuns, verificationStatus } from '@atmos/db'
import { type SignedLabel, verifyLabel } from '@atmos/labels'
import { TypedQueue, verifyAttestation } from '@atmos/queues'
import { createTestDatabase, goodMailZone, type TestDatabase, TestDnsServer } from '@atmos/testkit'
import { AtpAgent } from '@atproto/api'
import { TestNetworkNoAppView } from '@atproto/dev-env'
import { and, desc, eq } from 'drizzle-orm'
import { labelerConfigSchema } from '../src/config.ts'
import { LabelerService } from '../src/service.ts'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  firehoseLive,
  labelerEnv,
  queryLabels,
  relayMember,
  twoKeyMailZone,
} from './helpers.ts'

const BOB_DOMAINS = ['bob-one.example', 'bob-two.example'] as const

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
  let bob: AtpAgent
  let bobDid: string

  before(async () => {
    // The PDS keeps its SQLite data under the temp folder: give it one of its own.
    process.env.TMPDIR = mkdtempSync(join(tmpdir(), 'atmos-pds-'))
    network = await TestNetworkNoAppView.create({})
    agent = new AtpAgent({ service: network.pds.url })
    await agent.createAccount({ email: 'alice@mail.test', handle: 'alice.test', password: 'correct horse battery' })
    did = agent.session!.did
    bob = new AtpAgent({ service: network.pds.url })
    await bob.createAccount({ email: 'bob@mail.test', handle: 'bob.test', password: 'correct horse battery' })
    bobDid = bob.session!.did
    tdb = await createTestDatabase()
    dns = new TestDnsServer({
      ...goodMailZone('alice-mail.example', did),
      ...Object.assign({}, ...BOB_DOMAINS.map((d) => twoKeyMailZone(d, bobDid))),
    })
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
    await firehoseLive(service, network.pds.url)
  })

  after(async () => {
    await service?.destroy()
    await dns?.close()
    await tdb?.drop()
    await network?.close()
  })

  it("reports the firehose connected, and its lag from the events' time (a seq is no time)", async () => {
    const text = await (await fetch(`http://127.0.0.1:${service.ctx.ops.address!.port}/metrics`)).text()
    const value = (name: string) =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(`${name}{`))
          ?.split(' ')[1],
      )
    assert.equal(value('atmos_labeler_ingest_connected'), 1)
    const lag = value('atmos_labeler_ingest_lag_seconds')
    assert.ok(lag >= 0 && lag < 120, `lag ${lag} s`)
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
  it('one account attests two domains under their own keys (RSA and Ed25519 selectors); labels stay until both fail', async () => {
    const db = service.ctx.db
    // Bob is a relay member sending as both domains.
    await relayMember(db, bobDid, [...BOB_DOMAINS])
    for (const domain of BOB_DOMAINS) {
      await bob.com.atproto.repo.createRecord({
        repo: bobDid,
        collection: ATTESTATION,
        rkey: domain,
        record: attestationRecord(domain, ['atmos1r', 'atmos1e']),
      })
    }
    const xrpc = service.xrpcUrl!
    const labelsOf = async () => (await queryLabels(xrpc, bobDid)).map((l) => [l.val, l.neg === true] as const).sort()
    const holds = async () =>
      (await db.select().from(verificationStatus).where(eq(verificationStatus.did, bobDid)))
        .map((r) => [r.domain, r.holds] as const)
        .sort()
    await eventually(
      async () => ((await holds()).filter(([, held]) => held).length === 2 ? true : undefined),
      30_000,
      'both domains verified from the firehose',
    )
    assert.deepEqual(await holds(), [
      ['bob-one.example', true],
      ['bob-two.example', true],
    ])
    assert.deepEqual(await labelsOf(), [
      ['relay-member', false],
      ['verified-mail-operator', false],
    ])

    // Re-verification as the scheduler asks for it, one attestation at a time.
    const queue = new TypedQueue(verifyAttestation, service.ctx.redis, service.ctx.config.redis.prefix)
    const reverify = async (domain: string) => {
      const before = await db.select().from(verificationRuns).where(eq(verificationRuns.domain, domain))
      await queue.enqueue({ did: bobDid, rkey: domain, trigger: 'schedule', requestedAt: new Date().toISOString() })
      return eventually(async () => {
        const [run] = await db
          .select()
          .from(verificationRuns)
          .where(and(eq(verificationRuns.did, bobDid), eq(verificationRuns.domain, domain)))
          .orderBy(desc(verificationRuns.id))
          .limit(1)
        return run && !before.some((b) => b.id === run.id) ? run : undefined
      })
    }
    try {
      // The first domain's Ed25519 key is revoked: one failing selector fails the domain.
      dns.set(`atmos1e._domainkey.${BOB_DOMAINS[0]}`, { TXT: ['v=DKIM1; k=ed25519; p='] })
      const failed = await reverify(BOB_DOMAINS[0])
      assert.equal(failed.outcome, 'fail')
      const [dkim] = await db
        .select()
        .from(verificationChecks)
        .where(and(eq(verificationChecks.runId, failed.id), eq(verificationChecks.check, 'dkim')))
      assert.equal(dkim?.outcome, 'fail')
      assert.match(dkim?.reason ?? '', /atmos1e/)
      assert.deepEqual(await holds(), [
        ['bob-one.example', false],
        ['bob-two.example', true],
      ])
      assert.deepEqual(await labelsOf(), [
        ['relay-member', false],
        ['verified-mail-operator', false],
      ])

      // The second domain fails too (its RSA key withdrawn): nothing holds, both labels negated.
      dns.set(`atmos1r._domainkey.${BOB_DOMAINS[1]}`, undefined)
      assert.equal((await reverify(BOB_DOMAINS[1])).outcome, 'fail')
      assert.deepEqual(await holds(), [
        ['bob-one.example', false],
        ['bob-two.example', false],
      ])
      assert.deepEqual(await labelsOf(), [
        ['relay-member', true],
        ['verified-mail-operator', true],
      ])
    } finally {
      await queue.close()
    }
  })
})
