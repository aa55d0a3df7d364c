import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { attestations, verificationChecks, verificationRuns } from '@atmos/db'
import { type SignedLabel, verifyLabel } from '@atmos/labels'
import { goodMailZone, type JetstreamServer, type TestDnsServer, withNames } from '@atmos/testkit'
import { eq } from 'drizzle-orm'
import type { LabelerService } from '../src/service.ts'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  LabelSubscriber,
  queryLabels,
  relayMember,
  startLabeler,
} from './helpers.ts'

const ALICE = 'did:plc:alice7nxzyoun6zhxrhs64oi'
const BOB = 'did:plc:bob77nxzyoun6zhxrhs64oiz'
const STRANGER = 'did:plc:stranger6zhxrhs64oizaaaa'

describe('labeler pipeline: Jetstream event → checks → signed labels in queryLabels and subscribeLabels', () => {
  let h: LabelerHarness
  let dns: TestDnsServer
  let jetstream: JetstreamServer
  let service: LabelerService
  let xrpc: string
  let didKey: string
  let live: LabelSubscriber

  before(async () => {
    h = await startLabeler({ ...goodMailZone('alice.example', ALICE), ...goodMailZone('bob.example', BOB) })
    ;({ dns, jetstream, service, xrpc, didKey } = h)
    // Alice is an enrolled, active relay member; Bob only attests.
    await relayMember(service.ctx.db, ALICE, ['alice.example'])
    live = new LabelSubscriber(xrpc)
    await live.opened()
  })

  after(async () => {
    live?.close()
    await h?.close()
  })

  it('subscribes with wantedCollections and labels a verified member', async () => {
    assert.deepEqual(jetstream.connections[0]?.wantedCollections, [ATTESTATION])
    jetstream.commit(ALICE, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'alice.example',
      cid: 'bafyalice1',
      record: attestationRecord('alice.example'),
    })
    const labels = await eventually(
      async () => {
        const l = await queryLabels(xrpc, ALICE)
        return l.length === 2 ? l : undefined
      },
      20_000,
      'labels for alice',
    )
    assert.deepEqual(labels.map((l) => l.val).sort(), ['relay-member', 'verified-mail-operator'])
    for (const l of labels) {
      assert.equal(l.neg, undefined)
      const sig = Buffer.from(l.sig.$bytes, 'base64')
      assert.equal(await verifyLabel({ ...(l as unknown as SignedLabel), sig }, didKey), true)
    }
    // Every check stored with its reason.
    const [run] = await service.ctx.db.select().from(verificationRuns).where(eq(verificationRuns.did, ALICE))
    assert.equal(run?.outcome, 'pass')
    const checks = await service.ctx.db.select().from(verificationChecks).where(eq(verificationChecks.runId, run!.id))
    assert.deepEqual(checks.map((c) => c.check).sort(), ['dkim', 'dmarc', 'domain_control', 'mx', 'spf'])
  })

  it('a non-member gets verified-mail-operator only', async () => {
    jetstream.commit(BOB, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'bob.example',
      cid: 'bafybob1',
      record: attestationRecord('bob.example'),
    })
    const labels = await eventually(async () => {
      const l = await queryLabels(xrpc, BOB)
      return l.length ? l : undefined
    })
    await new Promise((r) => setTimeout(r, 300))
    assert.deepEqual(
      (await queryLabels(xrpc, BOB)).map((l) => l.val),
      ['verified-mail-operator'],
    )
    assert.equal(labels[0]!.uri, BOB)
  })

  it('stores a hostile record as rejected with its reason, and keeps going', async () => {
    jetstream.sendRaw('{not json')
    jetstream.sendRaw(JSON.stringify({ kind: 'commit', did: 'nope', time_us: 1 }))
    jetstream.commit(STRANGER, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'self',
      cid: 'bafyx',
      record: {
        $type: ATTESTATION,
        domain: 'x'.repeat(300),
        dkimSelectors: Array(10_000).fill('a/b'),
        createdAt: 'now',
      },
    })
    jetstream.identity(STRANGER, 'stranger.test') // not a member: dropped without a query
    const row = await eventually(async () => {
      const [r] = await service.ctx.db.select().from(attestations).where(eq(attestations.did, STRANGER))
      return r
    })
    assert.equal(row.state, 'rejected')
    assert.match(row.rejectionReason ?? '', /Record\/domain must not be longer than 253 characters/)
    assert.deepEqual(await queryLabels(xrpc, STRANGER), [])
    const metrics = await (await fetch(`http://127.0.0.1:${service.ctx.ops.address!.port}/metrics`)).text()
    assert.match(metrics, /atmos_labeler_ingest_malformed_total\{service="labeler"\} 2/)
    assert.match(metrics, /atmos_labeler_ingest_events_total\{kind="identity",outcome="dropped",service="labeler"\} 1/)
    assert.match(metrics, /atmos_labeler_ingest_events_total\{kind="record",outcome="rejected",service="labeler"\} 1/)
    assert.match(metrics, /atmos_labeler_verifications_total\{check="dmarc",outcome="pass",service="labeler"\} 2/)
    assert.match(metrics, /atmos_labeler_labels_emitted_total\{val="relay-member",neg="false",service="labeler"\} 1/)
    assert.match(metrics, /atmos_labeler_subscribers\{service="labeler"\} 1/)
    assert.match(metrics, /atmos_labeler_ingest_lag_seconds\{service="labeler"\} \d/)
  })

  it('negates when DNS degrades (DMARC p=none), seen in queryLabels and in the live stream', async () => {
    dns.zone = withNames(dns.zone, { '_dmarc.alice.example': { TXT: ['v=DMARC1; p=none'] } })
    jetstream.identity(ALICE, 'alice.test') // a member's identity event asks for re-verification
    const labels = await eventually(
      async () => {
        const l = await queryLabels(xrpc, ALICE)
        return l.every((x) => x.neg) ? l : undefined
      },
      20_000,
      'negation of alice',
    )
    assert.equal(labels.length, 2)
    const [run] = await service.ctx.db
      .select()
      .from(verificationChecks)
      .where(eq(verificationChecks.check, 'dmarc'))
      .orderBy(verificationChecks.id)
      .limit(1)
      .offset(2)
    assert.equal(run?.outcome, 'fail')
    assert.match(run?.reason ?? '', /p=none/)
    const streamed = await eventually(
      async () => {
        const l = live.labels().filter((x) => x.label.uri === ALICE)
        return l.length === 4 ? l : undefined
      },
      10_000,
      'four alice labels on the live stream',
    )
    assert.deepEqual(streamed.map((x) => [x.label.val, x.label.neg === true]).sort(), [
      ['relay-member', false],
      ['relay-member', true],
      ['verified-mail-operator', false],
      ['verified-mail-operator', true],
    ])
    for (const x of streamed) assert.equal(await verifyLabel(x.label as unknown as SignedLabel, didKey), true)
    assert.deepEqual(
      streamed.map((x) => x.seq),
      [...streamed.map((x) => x.seq)].sort((a, b) => a - b),
    )
  })

  it('a temporary DNS failure never negates', async () => {
    dns.behave('_dmarc.bob.example', 'servfail')
    jetstream.identity(BOB, 'bob.test')
    await eventually(
      async () => {
        const runs = await service.ctx.db.select().from(verificationRuns).where(eq(verificationRuns.did, BOB))
        return runs.some((r) => r.outcome === 'temperror') ? true : undefined
      },
      20_000,
      'a temperror run',
    ).catch(async (err) => {
      const runs = await service.ctx.db.select().from(verificationRuns).where(eq(verificationRuns.did, BOB))
      const att = await service.ctx.db.select().from(attestations).where(eq(attestations.did, BOB))
      throw new Error(
        `${err.message}; runs ${JSON.stringify(runs)}; attestation ${JSON.stringify(att.map((a) => [a.verifyRequestedAt, a.state]))}`,
      )
    })
    assert.deepEqual(
      (await queryLabels(xrpc, BOB)).map((l) => [l.val, l.neg]),
      [['verified-mail-operator', undefined]],
    )
    dns.behave('_dmarc.bob.example', undefined)
  })

  it('deleting the attestation negates the labels it held', async () => {
    jetstream.commit(BOB, { operation: 'delete', collection: ATTESTATION, rkey: 'bob.example' })
    const labels = await eventually(async () => {
      const l = await queryLabels(xrpc, BOB)
      return l.every((x) => x.neg) ? l : undefined
    })
    assert.deepEqual(
      labels.map((l) => l.val),
      ['verified-mail-operator'],
    )
  })
})
