import { sql } from 'drizzle-orm'
import {
  bigint,
  boolean,
  check,
  index,
  integer,
  pgSequence,
  pgTable,
  text,
  unique,
  uniqueIndex,
} from 'drizzle-orm/pg-core'
import { at, bytea, createdAt, id, ref } from './columns.ts'

/**
 * The labeler's public keys (secp256k1, as did:key). The private key lives in a file
 * (mode 0600) or a secret, never in the database; each label records which key signed it
 * so that a rotation can re-sign lazily.
 */
export const labelSigningKeys = pgTable(
  'label_signing_keys',
  {
    id: id(),
    didKey: text().notNull(),
    createdAt: createdAt(),
    retiredAt: at(),
  },
  (t) => [uniqueIndex('label_signing_keys_did_key_key').on(t.didKey)],
)

/** Label sequence numbers; taken only by the serialized label writer. */
export const labelSeq = pgSequence('label_seq', { startWith: 1, increment: 1 })

/**
 * Published labels, one row per (src, uri, cid, val) in its latest state: a change moves
 * the row to a new seq, as Ozone does, so replay from cursor 0 yields each label once.
 * `cts` and `exp` are kept as the exact strings that were signed.
 */
export const labels = pgTable(
  'labels',
  {
    seq: bigint({ mode: 'number' }).primaryKey(),
    ver: integer().notNull().default(1),
    src: text().notNull(),
    uri: text().notNull(),
    cid: text(),
    val: text().notNull(),
    neg: boolean().notNull().default(false),
    cts: text().notNull(),
    exp: text(),
    sig: bytea().notNull(),
    /**
     * The label as queryLabels sends it (JSON, `sig` as `{"$bytes": …}`), written with the
     * signature so that serving a page concatenates stored strings instead of rendering
     * 250 objects per request. Null on rows written before it existed: those are rendered
     * by the query itself.
     */
    wireJson: text(),
    /**
     * The signed label in DAG-CBOR (`labelWireCbor`), written with the signature like
     * wire_json, so that a subscribeLabels replay frames stored bytes instead of encoding
     * every row it reads. Null on rows written before it existed: those are encoded on read.
     */
    wireCbor: bytea(),
    signingKeyId: ref()
      .notNull()
      .references(() => labelSigningKeys.id),
    /** Why the label manager emitted it (check failed, suspension, renewal …). */
    reason: text(),
    createdAt: createdAt(),
  },
  (t) => [
    unique('labels_src_uri_cid_val_key').on(t.src, t.uri, t.cid, t.val).nullsNotDistinct(),
    // queryLabels walks (uri, seq) in byte order: a prefix pattern is one index range
    // whatever the database's collation, and paging is a row comparison on the same key.
    index('labels_uri_c_seq_idx').on(sql`(${t.uri} collate "C")`, t.seq),
    check('labels_val_length_check', sql`char_length(val) <= 128`),
  ],
)
