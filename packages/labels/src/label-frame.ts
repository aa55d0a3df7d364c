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

/**
 * `{seq, labels: [label]}` after the `#labels` header: what subscribeLabels sends per
 * label. Byte-for-byte what `encodeMessageFrame('#labels', …)` produces.
 */
export function encodeLabelFrame(seq: number, label: WireLabel): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0 || !Number.isSafeInteger(label.ver) || label.ver < 0) {
    return encodeMessageFrame('#labels', { seq, labels: [label] })
  }
  const hasCid = label.cid !== undefined && label.cid !== null
  const hasExp = label.exp !== undefined && label.exp !== null
  const neg = label.neg === true
  // Worst case for each string is 3 bytes per UTF-16 unit, plus heads and keys.
  const size =
    LABELS_HEADER.length +
    64 +
    3 * (label.src.length + label.uri.length + label.val.length + label.cts.length) +
    (hasCid ? 3 * label.cid!.length + 13 : 0) +
    (hasExp ? 3 * label.exp!.length + 13 : 0) +
    label.sig.length +
    96
  const w = new Writer(size)
  LABELS_HEADER.copy(w.buf, 0)
  w.pos = LABELS_HEADER.length
  w.head(5, 2)
  // Keys in DAG-CBOR order: shorter first, then bytewise.
  w.key('seq')
  w.head(0, seq)
  w.key('labels')
  w.head(4, 1)
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
  return w.buf.subarray(0, w.pos)
}
