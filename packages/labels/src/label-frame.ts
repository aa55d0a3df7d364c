import * as dagCbor from '@ipld/dag-cbor'
import { encodeMessageFrame } from './frames.ts'

// The subscribeLabels replay hot path: one `#labels` frame per label, hundreds of thousands
// of them for a consumer that starts from cursor 0. A generic DAG-CBOR encoder spends most
// of its time on what never changes here (sorting the same keys, checking types), so this
// writes the bytes of this one shape directly. The test holds it to be byte-identical with
// @ipld/dag-cbor for labels of every shape and size; anything unexpected falls back to it.

/** A label as stored, ready for the wire (`neg` false and absent fields are left out). */
export type WireLabel = {
  ver: number
  src: string
  uri: string
  cid?: string | null
  val: string
  neg?: boolean
  cts: string
  exp?: string | null
  sig: Uint8Array
}

class Writer {
  buf: Buffer
  pos = 0

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size)
  }

  /** CBOR head: major type and argument, in the shortest form (as DAG-CBOR requires). */
  head(major: number, n: number) {
    const m = major << 5
    const b = this.buf
    if (n < 24) b[this.pos++] = m | n
    else if (n < 0x100) {
      b[this.pos++] = m | 24
      b[this.pos++] = n
    } else if (n < 0x10000) {
      b[this.pos++] = m | 25
      b.writeUInt16BE(n, this.pos)
      this.pos += 2
    } else if (n < 0x100000000) {
      b[this.pos++] = m | 26
      b.writeUInt32BE(n, this.pos)
      this.pos += 4
    } else {
      b[this.pos++] = m | 27
      b.writeBigUInt64BE(BigInt(n), this.pos)
      this.pos += 8
    }
  }

  /** Map keys here are short ASCII literals. */
  key(k: string) {
    this.buf[this.pos++] = 0x60 | k.length
    this.pos += this.buf.write(k, this.pos, 'latin1')
  }

  text(s: string) {
    const len = Buffer.byteLength(s, 'utf8')
    this.head(3, len)
    this.pos += this.buf.write(s, this.pos, 'utf8')
  }

  bytes(v: Uint8Array) {
    this.head(2, v.length)
    this.buf.set(v, this.pos)
    this.pos += v.length
  }
}

/** The frame header `{op: 1, t: '#labels'}` in DAG-CBOR (map keys sorted by length, then bytes). */
const LABELS_HEADER = Buffer.from([0xa2, 0x61, 0x74, 0x67, ...Buffer.from('#labels'), 0x62, 0x6f, 0x70, 0x01])

/** Worst-case bytes of a label's DAG-CBOR: 3 bytes per UTF-16 unit of each string, plus heads and keys. */
function labelBound(label: WireLabel): number {
  return (
    64 +
    3 * (label.src.length + label.uri.length + label.val.length + label.cts.length) +
    (label.cid != null ? 3 * label.cid.length + 13 : 0) +
    (label.exp != null ? 3 * label.exp.length + 13 : 0) +
    label.sig.length +
    96
  )
}

/** Writes the label map itself (keys in DAG-CBOR order: shorter first, then bytewise). */
function writeLabel(w: Writer, label: WireLabel) {
  const hasCid = label.cid !== undefined && label.cid !== null
  const hasExp = label.exp !== undefined && label.exp !== null
  const neg = label.neg === true
  w.head(5, 6 + (hasCid ? 1 : 0) + (hasExp ? 1 : 0) + (neg ? 1 : 0))
  if (hasCid) {
    w.key('cid')
    w.text(label.cid!)
  }
  w.key('cts')
  w.text(label.cts)
  if (hasExp) {
    w.key('exp')
    w.text(label.exp!)
  }
  if (neg) {
    w.key('neg')
    w.buf[w.pos++] = 0xf5
  }
  w.key('sig')
  w.bytes(label.sig)
  w.key('src')
  w.text(label.src)
  w.key('uri')
  w.text(label.uri)
  w.key('val')
  w.text(label.val)
  w.key('ver')
  w.head(0, label.ver)
}

/** What a generic encoder is given when a value is outside what the hand-written path covers. */
function wireObject(label: WireLabel): Record<string, unknown> {
  const wire: Record<string, unknown> = { ver: label.ver, src: label.src, uri: label.uri }
  if (label.cid != null) wire.cid = label.cid
  wire.val = label.val
  if (label.neg === true) wire.neg = true
  wire.cts = label.cts
  if (label.exp != null) wire.exp = label.exp
  wire.sig = label.sig
  return wire
}

/**
 * `{seq, labels: [label]}` after the `#labels` header: what subscribeLabels sends per
 * label. Byte-for-byte what `encodeMessageFrame('#labels', …)` produces.
 */
export function encodeLabelFrame(seq: number, label: WireLabel): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0 || !Number.isSafeInteger(label.ver) || label.ver < 0) {
    return encodeMessageFrame('#labels', { seq, labels: [wireObject(label)] })
  }
  const w = new Writer(LABELS_HEADER.length + 32 + labelBound(label))
  LABELS_HEADER.copy(w.buf, 0)
  w.pos = LABELS_HEADER.length
  w.head(5, 2)
  w.key('seq')
  w.head(0, seq)
  w.key('labels')
  w.head(4, 1)
  writeLabel(w, label)
  return w.buf.subarray(0, w.pos)
}

/**
 * The signed label alone in DAG-CBOR, exactly the bytes it takes inside a `#labels` frame.
 * Stored with the row when it is signed (labels.wire_cbor), so that a replay builds each
 * frame from stored bytes (writeLabelFrame) instead of encoding the label again.
 */
export function labelWireCbor(label: WireLabel): Uint8Array {
  if (!Number.isSafeInteger(label.ver) || label.ver < 0) return dagCbor.encode(wireObject(label))
  const w = new Writer(labelBound(label))
  writeLabel(w, label)
  return w.buf.subarray(0, w.pos)
}

/** Bytes of a CBOR unsigned integer's head in its shortest form. */
function uintLength(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9
}

/** `{seq, labels: [` once the header is written: map head, "seq", its value, "labels", array head. */
const BODY_KEYS = 1 + 4 + 7 + 1

/** Length of the `#labels` frame writeLabelFrame writes for `seq` around `labelLength` bytes of label. */
export function labelFrameLength(seq: number, labelLength: number): number {
  return LABELS_HEADER.length + BODY_KEYS + uintLength(seq) + labelLength
}

/**
 * Writes the `#labels` frame for `seq` around a label already in DAG-CBOR (labelWireCbor)
 * into `buf` at `pos`, returning the position after it: the constant header, then
 * `{seq, labels: [<label>]}` by hand ("seq" before "labels": DAG-CBOR sorts shorter keys
 * first). Byte-for-byte encodeLabelFrame's; `buf` must have labelFrameLength bytes free.
 */
export function writeLabelFrame(buf: Buffer, pos: number, seq: number, labelCbor: Uint8Array): number {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`label seq ${seq} is not a non-negative integer`)
  const w = new Writer(0)
  w.buf = buf
  w.pos = pos + LABELS_HEADER.copy(buf, pos)
  w.head(5, 2)
  w.key('seq')
  w.head(0, seq)
  w.key('labels')
  w.head(4, 1)
  buf.set(labelCbor, w.pos)
  return w.pos + labelCbor.length
}
