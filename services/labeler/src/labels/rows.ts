import type { labels } from '@atmos/db'
import type { SignedLabel } from '@atmos/labels'

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
