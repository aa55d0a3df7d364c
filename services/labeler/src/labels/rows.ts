import type { labels } from '@atmos/db'
import { labelWireCbor, type SignedLabel } from '@atmos/labels'

export type LabelRow = typeof labels.$inferSelect

/** A stored row as the signed label it holds (optional fields absent, not null). */
export function rowToLabel(row: LabelRow): SignedLabel {
  const label: SignedLabel = {
    ver: 1,
    src: row.src,
    uri: row.uri,
    val: row.val,
    cts: row.cts,
    sig: new Uint8Array(row.sig),
  }
  if (row.cid !== null) label.cid = row.cid
  if (row.neg) label.neg = true
  if (row.exp !== null) label.exp = row.exp
  return label
}

/**
 * The label in DAG-CBOR as subscribeLabels sends it inside each `#labels` frame, stored
 * with the row when it is signed (and re-signed), as labelWireJson is for queryLabels.
 */
export function labelWireBytes(label: SignedLabel): Buffer {
  const bytes = labelWireCbor(label)
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/**
 * The label as queryLabels sends it, in the atproto JSON data model: `sig` as
 * `{"$bytes": "<base64, unpadded>"}`, absent optional fields and a false `neg` left out.
 * Stored with the row when it is signed (and again when it is re-signed), so that a page
 * is stored strings joined; the key order is the one the query's fallback renders.
 */
export function labelWireJson(label: SignedLabel): string {
  const wire: Record<string, unknown> = { ver: label.ver, src: label.src, uri: label.uri }
  if (label.cid !== undefined) wire.cid = label.cid
  wire.val = label.val
  if (label.neg === true) wire.neg = true
  wire.cts = label.cts
  if (label.exp !== undefined) wire.exp = label.exp
  wire.sig = { $bytes: unpadded(Buffer.from(label.sig).toString('base64')) }
  return JSON.stringify(wire)
}

/** atproto's `$bytes` is base64 without padding (at most two `=`, dropped without a regex). */
function unpadded(b64: string): string {
  let end = b64.length
  while (end > 0 && b64.charCodeAt(end - 1) === 61) end--
  return b64.slice(0, end)
}
