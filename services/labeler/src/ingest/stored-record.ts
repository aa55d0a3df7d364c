/**
 * What ingest keeps of a record, bounded whatever a stranger writes: any account may store
 * records of our collection, and every one becomes a row.
 */

/** Bytes of a rejected record's JSON kept for an operator to read. */
export const REJECTED_RECORD_PREFIX_BYTES = 1024

/** Characters of a rejection reason kept (a validator's message may quote the record). */
export const REJECTION_REASON_CHARS = 512

/**
 * A rejected record as its JSON text, cut to the first `REJECTED_RECORD_PREFIX_BYTES` bytes
 * (never inside a character) and marked when cut. Kept as text inside the JSON, never as
 * structure: Postgres jsonb refuses a NUL in a string, which would stall ingest on replay.
 */
export function rejectedRecordPrefix(
  value: unknown,
  maxBytes = REJECTED_RECORD_PREFIX_BYTES,
): { json: string; bytes: number; truncated: boolean } | null {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch {
    return null // a cycle or a BigInt: nothing JSON can hold
  }
  if (text === undefined) return null
  const encoder = new TextEncoder()
  const bytes = encoder.encode(text).length
  if (bytes <= maxBytes) return { json: text, bytes, truncated: false }
  // encodeInto writes whole characters only, so the prefix is valid UTF-8.
  const buf = new Uint8Array(maxBytes)
  const { written } = encoder.encodeInto(text, buf)
  return { json: new TextDecoder().decode(buf.subarray(0, written)), bytes, truncated: true }
}

/** A rejection reason fit for a text column: no NUL (Postgres refuses it), bounded. */
export function boundedReason(reason: string): string {
  const clean = reason.replaceAll('\0', '')
  return clean.length > REJECTION_REASON_CHARS ? `${clean.slice(0, REJECTION_REASON_CHARS - 1)}…` : clean
}

/**
 * A valid record as the fields the lexicon defines: a record may carry any other field
 * (lexicon objects are open), and those are neither ours to keep nor bounded.
 */
export function knownFields(r: {
  domain: string
  dkimSelectors: string[]
  relayMember?: boolean
  createdAt: string
}): Record<string, unknown> {
  return {
    domain: r.domain,
    dkimSelectors: r.dkimSelectors,
    ...(r.relayMember === undefined ? {} : { relayMember: r.relayMember }),
    createdAt: r.createdAt,
  }
}
