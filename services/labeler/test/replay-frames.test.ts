import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import {
  createSigningKeyFile,
  encodeLabelFrame,
  labelWireCbor,
  loadSigningKeyFile,
  type SignedLabel,
  signLabel,
  verifyLabel,
} from '@atmos/labels'
import { createTestDatabase, TEST_REDIS_URL, type TestDatabase, testRedisPrefix } from '@atmos/testkit'
import { Frame } from '@atproto/xrpc-server'
import postgres from 'postgres'
import WebSocket, * as wsModule from 'ws'
import { labelMessages } from '../src/api/websocket-batch.ts'
import { labelerConfigSchema } from '../src/config.ts'
import { rowToLabel } from '../src/labels/rows.ts'
import { LabelerService } from '../src/service.ts'

/** ws's own frame builder; @types/ws does not declare it. */
const { Sender } = wsModule as unknown as {
  Sender: { frame(data: Buffer, options: Record<string, unknown>): Buffer[] }
}

it('a batch of label messages is the frames ws itself would send, at every WebSocket length size', () => {
  const base = {
    ver: 1 as const,
    src: 'did:plc:labeler',
    uri: 'did:plc:x',
    val: 'v',
    cts: '2026-12-07T00:00:00.000Z',
    sig: new Uint8Array(64).fill(7),
  }
  // Payloads under 126 bytes, under 64 KiB, and over (2-, 4- and 10-byte frame heads).
  const batch = [
    { seq: 1, cbor: labelWireCbor({ ...base, sig: new Uint8Array(0) }) },
    { seq: 300, cbor: labelWireCbor(base) },
    { seq: 70_000, cbor: labelWireCbor({ ...base, uri: 'a'.repeat(70_000) }) },
  ]
  const want: Buffer[] = []
  for (const { seq, cbor } of batch) {
    const payload = Buffer.from(encodeLabelFrame(seq, rowLabel(cbor)))
    const [head, data] = Sender.frame(payload, { fin: true, opcode: 2, mask: false, readOnly: false, rsv1: false })
    want.push(Buffer.from(head!), Buffer.from(data!))
  }
  assert.ok(batch[0]!.cbor.length < 100 && batch[2]!.cbor.length > 65_536)
  assert.deepEqual(labelMessages(batch), Buffer.concat(want))
  assert.equal(labelMessages([]).length, 0)
})

/** A label back from its DAG-CBOR, through the same decoder a consumer uses. */
function rowLabel(cbor: Uint8Array): SignedLabel {
  const frame = Frame.fromBytes(
    Buffer.concat([Buffer.from([0xa2, 0x61, 0x74, 0x61, 0x78, 0x62, 0x6f, 0x70, 0x01]), cbor]),
  )
  return frame.body as SignedLabel
}

describe('subscribeLabels replay from stored label bytes', () => {
  let tdb: TestDatabase
  let service: LabelerService
  let sql: postgres.Sql
  let didKey: string
  let keyFile: string

  before(async () => {
    tdb = await createTestDatabase()
    sql = postgres(tdb.url, { max: 2, onnotice: () => {} })
    keyFile = join(mkdtempSync(join(tmpdir(), 'atmos-replay-')), 'k.key')
    didKey = (await createSigningKeyFile(keyFile)).did()
    const config = loadConfig(labelerConfigSchema, {
      env: {
        ATMOS_DATABASE_URL: tdb.url,
        ATMOS_REDIS_URL: TEST_REDIS_URL,
        ATMOS_REDIS_PREFIX: testRedisPrefix('replay'),
        ATMOS_HTTP_PORT: '0',
        ATMOS_LOG_LEVEL: 'silent',
        ATMOS_LABELER_SIGNING_KEY_FILE: keyFile,
        ATMOS_LABELER_XRPC_PORT: '0',
        ATMOS_LABELER_INGEST_SOURCE: 'none',
        // Several pages, so that the replay is several batches.
        ATMOS_LABELER_SUBSCRIBE_BACKFILL_PAGE_SIZE: '2',
      },
    })
    service = await LabelerService.create(config)
    await service.start()
    await service.whenStarted()
  })
  after(async () => {
    await service?.destroy()
    await sql?.end()
    await tdb?.drop()
  })

  /** Every binary message until `count`, as received, from `cursor`. */
  function collect(cursor: number, count: number, onOpen?: () => Promise<void>): Promise<Buffer[]> {
    const ws = new WebSocket(
      `${service.xrpcUrl!.replace('http', 'ws')}/xrpc/com.atproto.label.subscribeLabels?cursor=${cursor}`,
    )
    const got: Buffer[] = []
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${count} messages`)), 30_000)
      ws.on('open', () => void onOpen?.().catch(reject))
      ws.on('message', (data: Buffer) => {
        got.push(data)
        if (got.length === count) {
          clearTimeout(timer)
          ws.close()
          resolve(got)
        }
      })
      ws.on('error', reject)
    })
  }

  it('frames with and without neg, exp and cid, stored or from rows without stored bytes, are byte-identical and verify', async () => {
    const w = service.ctx.labelWriter
    await w.emit([{ uri: 'did:plc:plain', val: 'verified-mail-operator', neg: false, reason: 't' }])
    await w.emit([{ uri: 'did:plc:negated', val: 'verified-mail-operator', neg: true, reason: 't' }])
    await w.emit([
      { uri: 'did:plc:expiring', val: 'clean-sender', neg: false, exp: '2027-01-01T00:00:00.000Z', reason: 't' },
    ])
    // The writer never sets a cid: one signed by hand, with every optional field.
    const keypair = await loadSigningKeyFile(keyFile)
    const withCid = await signLabel(
      {
        ver: 1,
        src: didKey,
        uri: 'at://did:plc:rec/app.bsky.feed.post/3k',
        cid: 'bafyreib2rxk3rh6kzwqxdvx3e7lbjwjo7yvwnwhrjmkwkdhvg7a4uiq3ya',
        val: 'spam',
        neg: true,
        cts: '2026-12-07T00:00:00.000Z',
        exp: '2027-12-07T00:00:00.000Z',
      },
      keypair,
    )
    const [key] = await sql`select id from label_signing_keys`
    for (const [uri, stored] of [
      ['at://did:plc:rec/app.bsky.feed.post/3k', true],
      ['at://did:plc:rec/app.bsky.feed.post/3l', false],
    ] as const) {
      const label = { ...withCid, uri }
      const signed = await signLabel(label, keypair)
      await sql`insert into labels (seq, src, uri, cid, val, neg, cts, exp, sig, signing_key_id, wire_cbor)
        values (nextval('label_seq'), ${signed.src}, ${signed.uri}, ${signed.cid!}, ${signed.val}, true, ${signed.cts},
          ${signed.exp!}, ${Buffer.from(signed.sig)}, ${key!.id}, ${stored ? Buffer.from(labelWireCbor(signed)) : null})`
    }
    // A row from before wire_cbor existed.
    await sql`update labels set wire_cbor = null where uri = 'did:plc:negated'`
    const rows = await service.ctx.db.query.labels.findMany({ orderBy: (l, { asc }) => [asc(l.seq)] })
    assert.equal(rows.length, 5)
    assert.deepEqual(
      rows.map((r) => r.wireCbor === null),
      [false, true, false, false, true],
    )

    // Replay, and one more label written live once the client is connected.
    const live = { uri: 'did:plc:live', val: 'relay-member', neg: false, reason: 't' }
    const got = await collect(0, 6, async () => {
      await w.emit([live])
    })
    const all = await service.ctx.db.query.labels.findMany({ orderBy: (l, { asc }) => [asc(l.seq)] })
    assert.equal(all.length, 6)
    for (const [i, row] of all.entries()) {
      assert.deepEqual(got[i], Buffer.from(encodeLabelFrame(row.seq, rowToLabel(row))), `frame of seq ${row.seq}`)
      // atproto's own frame decoder, then the signature.
      const frame = Frame.fromBytes(got[i]!)
      assert.ok(frame.isMessage())
      assert.equal(frame.type, '#labels')
      const body = frame.body as { seq: number; labels: SignedLabel[] }
      assert.equal(body.seq, row.seq)
      assert.equal(body.labels.length, 1)
      assert.equal(body.labels[0]!.uri, row.uri)
      assert.equal(await verifyLabel(body.labels[0]!, didKey), true, `signature of seq ${row.seq}`)
    }
  })
})
