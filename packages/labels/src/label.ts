import * as dagCbor from '@ipld/dag-cbor'

/**
 * A label as `com.atproto.label.defs#label` defines it. `cts` and `exp` are kept as the
 * exact strings that were signed: re-formatting a date would break the signature.
 */
export type Label = {
  ver: 1
  src: string
  uri: string
  cid?: string
  val: string
  neg?: boolean
  cts: string
  exp?: string
}

export type SignedLabel = Label & { sig: Uint8Array }

/**
 * The object that is signed: exactly the schema's fields minus `sig`, with absent optional
 * fields left out, and `neg` left out when false (as Ozone and the Go implementation do,
 * so that a label re-encoded by another implementation hashes the same). No `$type`.
 */
export function unsignedLabelObject(label: Label): Record<string, unknown> {
  const out: Record<string, unknown> = { ver: label.ver, src: label.src, uri: label.uri }
  if (label.cid !== undefined) out.cid = label.cid
  out.val = label.val
  if (label.neg === true) out.neg = true
  out.cts = label.cts
  if (label.exp !== undefined) out.exp = label.exp
  return out
}

/** The DAG-CBOR bytes a label signature covers (key order is canonicalised by the encoder). */
export function labelSigningBytes(label: Label): Uint8Array {
  return dagCbor.encode(unsignedLabelObject(label))
}

/** A signed label as it goes over the wire: the unsigned object plus `sig`. */
export function labelWireObject(label: SignedLabel): Record<string, unknown> {
  return { ...unsignedLabelObject(label), sig: label.sig }
}
