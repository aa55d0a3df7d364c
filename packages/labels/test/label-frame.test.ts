import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { it } from 'node:test'
import * as dagCbor from '@ipld/dag-cbor'
import {
  decodeFrame,
  encodeLabelFrame,
  encodeMessageFrame,
  labelFrameLength,
  labelWireCbor,
  type WireLabel,
  writeLabelFrame,
} from '../src/index.ts'

// Strings around every CBOR length boundary, in 1-, 2-, 3- and 4-byte UTF-8.
const LENGTHS = [0, 1, 23, 24, 255, 256, 65535, 65536]
const CHARS = ['a', 'é', '€', '😀']
const SEQS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]

function text(len: number, ch: string): string {
  return ch.repeat(Math.max(0, Math.ceil(len / Buffer.byteLength(ch)))).slice(0, len)
}

function sameAsDagCbor(seq: number, label: WireLabel) {
  const wire: Record<string, unknown> = { ver: label.ver, src: label.src, uri: label.uri }
  if (label.cid != null) wire.cid = label.cid
  wire.val = label.val
  if (label.neg) wire.neg = true
  wire.cts = label.cts
  if (label.exp != null) wire.exp = label.exp
  wire.sig = label.sig
  const want = encodeMessageFrame('#labels', { seq, labels: [wire] })
  const got = encodeLabelFrame(seq, label)
  const what = `seq ${seq}, ${JSON.stringify({ ...label, sig: undefined })}`
  assert.deepEqual(Buffer.from(got), Buffer.from(want), what)
  // The stored form: the label alone, then framed around it at read time.
  const stored = labelWireCbor(label)
  assert.deepEqual(Buffer.from(stored), Buffer.from(dagCbor.encode(wire)), what)
  assert.equal(labelFrameLength(seq, stored.length), want.length, what)
  // Written between other bytes, as a batch of frames is, without touching them.
  const buf = Buffer.alloc(want.length + 6, 0xee)
  const end = writeLabelFrame(buf, 3, seq, stored)
  assert.equal(end, 3 + want.length, what)
  assert.deepEqual(buf.subarray(3, end), Buffer.from(want), what)
  assert.deepEqual([...buf.subarray(0, 3), ...buf.subarray(end)], [0xee, 0xee, 0xee, 0xee, 0xee, 0xee], what)
}

const base: WireLabel = {
  ver: 1,
  src: 'did:plc:labeler7xyoun6zhxrhs64',
  uri: 'did:plc:member7xyoun6zhxrhs64',
  val: 'verified-mail-operator',
  cts: '2026-11-25T12:00:00.000Z',
  sig: randomBytes(64),
}

it('a label frame is byte-identical with the generic DAG-CBOR encoder, for every optional field and seq size', () => {
  for (const seq of SEQS) {
    for (const cid of [null, 'bafyreib2rxk3rh6kzwq']) {
      for (const neg of [false, true]) {
        for (const exp of [null, '2026-12-01T12:00:00.000Z']) sameAsDagCbor(seq, { ...base, cid, neg, exp })
      }
    }
  }
})

it('a label frame is byte-identical for strings and signatures at every length boundary and UTF-8 width', () => {
  for (const len of LENGTHS) {
    for (const ch of CHARS) {
      sameAsDagCbor(42, { ...base, uri: text(len, ch), val: text(Math.min(len, 300), ch) })
      sameAsDagCbor(42, { ...base, src: text(len, ch), cts: text(len, ch), exp: text(len, ch) })
    }
    sameAsDagCbor(7, { ...base, sig: randomBytes(len) })
  }
  sameAsDagCbor(1, { ...base, ver: 300 })
})

it('a label frame decodes back to the label', () => {
  const label = { ...base, neg: true, exp: '2026-12-01T00:00:00.000Z' }
  const frame = decodeFrame(encodeLabelFrame(99, label))
  assert.deepEqual(frame.header, { op: 1, t: '#labels' })
  const body = frame.body as { seq: number; labels: Array<Record<string, unknown>> }
  assert.equal(body.seq, 99)
  assert.equal(body.labels[0]!.neg, true)
  assert.deepEqual(Buffer.from(body.labels[0]!.sig as Uint8Array), Buffer.from(base.sig))
})

it('a stored label frame refuses a seq it cannot write', () => {
  const stored = labelWireCbor(base)
  const buf = Buffer.alloc(labelFrameLength(0, stored.length))
  assert.throws(() => writeLabelFrame(buf, 0, -1, stored), RangeError)
  assert.throws(() => writeLabelFrame(buf, 0, 1.5, stored), RangeError)
})
