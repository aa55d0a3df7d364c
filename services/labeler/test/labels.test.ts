import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createDb, type Db, labelSigningKeys, labels } from '@atmos/db'
import { labelWireCbor, verifyLabel } from '@atmos/labels'
import { createLogger } from '@atmos/runtime'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { asc, eq, gt } from 'drizzle-orm'
import { rowToLabel } from '../src/labels/rows.ts'
import { ConsumerTooSlowError, FutureCursorError, LabelStream, type StreamLabel } from '../src/labels/stream.ts'
import { type LabelSigner, LabelWriter } from '../src/labels/writer.ts'

describe('label writer and stream', () => {
  let tdb: TestDatabase
  let db: Db
  let signer: LabelSigner
  const logger = createLogger('test', 'silent')

  before(async () => {
    tdb = await createTestDatabase()
    db = createDb({ url: tdb.url, poolMax: 12 })
    const keypair = await Secp256k1Keypair.create()
    signer = { keypair, src: keypair.did() }
  })
  after(async () => {
    await db.$client.end()
    await tdb.drop()
  })

  it('emits a label only when its state changes, and negates only what was issued', async () => {
    const writer = new LabelWriter(db, signer)
    const uri = 'did:plc:idempotent'
    const held = new Map([['verified-mail-operator', { held: true }]])
    const first = await writer.reconcile(uri, held, 'all checks passed')
    assert.equal(first.length, 1)
    assert.equal(await verifyLabel(first[0]!, signer.keypair.did()), true)
    assert.deepEqual(await writer.reconcile(uri, held, 'all checks passed'), [])
    assert.deepEqual(await writer.reconcile(uri, new Map([['relay-member', { held: false }]]), 'never held'), [])
    const negated = await writer.reconcile(uri, new Map([['verified-mail-operator', { held: false }]]), 'DMARC p=none')
    assert.equal(negated.length, 1)
    assert.equal(negated[0]!.neg, true)
    assert.ok(negated[0]!.seq > first[0]!.seq)
    assert.deepEqual(await writer.reconcile(uri, new Map([['verified-mail-operator', { held: false }]]), 'again'), [])
    // One row per label, in its latest state.
    const rows = (await db.select().from(labels)).filter((r) => r.uri === uri)
    assert.equal(rows.length, 1)
    assert.equal(await verifyLabel(rowToLabel(rows[0]!), signer.keypair.did()), true)
  })

  it('makes seq order the visibility order: a reader never later finds a seq below one it has seen', async () => {
    const writers = Array.from({ length: 6 }, () => new LabelWriter(createDb({ url: tdb.url, poolMax: 2 }), signer))
    const seen = new Set<number>()
    let last = 0
    let done = false
    const reader = (async () => {
      while (!done) {
        const rows = await db
          .select({ seq: labels.seq })
          .from(labels)
          .where(gt(labels.seq, last))
          .orderBy(asc(labels.seq))
        for (const r of rows) seen.add(r.seq)
        if (rows.length) last = rows[rows.length - 1]!.seq
      }
    })()
    await Promise.all(
      writers.map((w, i) =>
        (async () => {
          for (let j = 0; j < 25; j++) {
            await w.emit([{ uri: `did:plc:w${i}x${j}`, val: 'verified-mail-operator', neg: false, reason: 'test' }])
          }
        })(),
      ),
    )
    done = true
    await reader
    const all = await db.select({ seq: labels.seq }).from(labels).where(gt(labels.seq, 0))
    const final = await db.select({ seq: labels.seq }).from(labels).where(gt(labels.seq, last))
    for (const r of final) seen.add(r.seq)
    const missed = all.filter((r) => !seen.has(r.seq))
    assert.deepEqual(missed, [], 'the reader skipped labels that committed behind its cursor')
    await Promise.all(writers.map((w) => w.db.$client.end()))
  })

  it('replays from a cursor, then goes live without losing what was written during the replay', async () => {
    const writer = new LabelWriter(db, signer)
    const stream = new LabelStream(db, logger, { maxBuffer: 1000, pageSize: 7 })
    await stream.start()
    const ac = new AbortController()
    try {
      const before = await stream.maxSeq()
      const received: number[] = []
      const consumer = (async () => {
        for await (const row of stream.subscribe(0, ac.signal)) {
          received.push(row.seq)
          if (received.length === 1) {
            // Written while the replay is under way.
            for (let i = 0; i < 10; i++)
              await writer.emit([{ uri: `did:plc:live${i}`, val: 'relay-member', neg: false, reason: 't' }])
          }
          if (row.seq >= before + 10) break
        }
      })()
      await consumer
      const expected = (await db.select({ seq: labels.seq }).from(labels).orderBy(asc(labels.seq))).map((r) => r.seq)
      assert.deepEqual(received, expected, 'every label exactly once, in seq order')
    } finally {
      ac.abort()
      await stream.stop()
    }
  })

  it('refuses a cursor in the future, and cuts off a subscriber that falls too far behind', async () => {
    const writer = new LabelWriter(db, signer)
    const stream = new LabelStream(db, logger, { maxBuffer: 5, pageSize: 100 })
    await stream.start()
    const ac = new AbortController()
    try {
      const max = await stream.maxSeq()
      await assert.rejects(stream.subscribe(max + 1, ac.signal).next(), FutureCursorError)
      const live = stream.subscribe(undefined, ac.signal)
      const first = live.next() // registers, then waits for live events
      await writer.emit([{ uri: 'did:plc:slow0', val: 'relay-member', neg: false, reason: 't' }])
      // Subscribers get each label as its DAG-CBOR, ready to frame.
      const event = (await first).value as StreamLabel
      assert.equal((dagCbor.decode(event.cbor) as { uri: string }).uri, 'did:plc:slow0')
      // The consumer stops reading while more than maxBuffer events arrive.
      for (let i = 1; i <= 8; i++)
        await writer.emit([{ uri: `did:plc:slow${i}`, val: 'relay-member', neg: false, reason: 't' }])
      const deadline = Date.now() + 5000
      while (stream.subscriberCount && Date.now() < deadline) {
        try {
          await live.next()
        } catch (err) {
          assert.ok(err instanceof ConsumerTooSlowError)
          break
        }
      }
      assert.equal(stream.subscriberCount, 0)
    } finally {
      ac.abort()
      await stream.stop()
    }
  })

  it('after a key rotation re-signs our labels with the new key, same seq, and retires the old key', async () => {
    const src = 'did:plc:rotatinglabeler7xyoun6zhxr'
    const oldKey = await Secp256k1Keypair.create()
    const newKey = await Secp256k1Keypair.create()
    const other = await Secp256k1Keypair.create()
    const before = new LabelWriter(db, { keypair: oldKey, src })
    const uris = Array.from({ length: 1200 }, (_, i) => `did:plc:rotated${i}`)
    await before.emit(uris.map((uri) => ({ uri, val: 'verified-mail-operator', neg: false, reason: 'test' })))
    // An earlier identity (its own did:key as src): not ours to re-sign.
    const foreign = await new LabelWriter(db, { keypair: other, src: other.did() }).emit([
      { uri: 'did:plc:rotated0', val: 'verified-mail-operator', neg: false, reason: 'test' },
    ])
    const seqsBefore = (await db.select({ seq: labels.seq }).from(labels).where(eq(labels.src, src))).map((r) => r.seq)

    const stream = new LabelStream(db, logger, { maxBuffer: 10, pageSize: 10 })
    await stream.start()
    let changes = 0
    stream.onChange(() => changes++)
    try {
      const after = new LabelWriter(db, { keypair: newKey, src })
      assert.equal(await after.resignStale({ batch: 500 }), uris.length)
      assert.equal(await after.resignStale({ batch: 500 }), 0, 'nothing left to re-sign')
      const rows = await db.select().from(labels).where(eq(labels.src, src)).orderBy(asc(labels.seq))
      assert.deepEqual(
        rows.map((r) => r.seq),
        [...seqsBefore].sort((a, b) => a - b),
        'seq unchanged',
      )
      for (const row of rows) {
        assert.equal(await verifyLabel(rowToLabel(row), newKey.did()), true)
        // The stored replay bytes carry the new signature too.
        assert.deepEqual(row.wireCbor, Buffer.from(labelWireCbor(rowToLabel(row))), `wire_cbor of seq ${row.seq}`)
      }
      assert.equal(await verifyLabel(rowToLabel(rows[0]!), oldKey.did()), false)
      const [foreignRow] = await db.select().from(labels).where(eq(labels.seq, foreign[0]!.seq))
      assert.equal(await verifyLabel(rowToLabel(foreignRow!), other.did()), true, 'another src is left alone')
      const keys = await db.select().from(labelSigningKeys)
      assert.ok(keys.find((k) => k.didKey === oldKey.did())?.retiredAt, 'the old key signs nothing now: retired')
      assert.equal(keys.find((k) => k.didKey === newKey.did())?.retiredAt, null)
      // Every process drops its cached pages when signatures change.
      const deadline = Date.now() + 5000
      while (changes === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      assert.ok(changes > 0, 'the stream announced the change')
    } finally {
      await stream.stop()
    }
  })
})
