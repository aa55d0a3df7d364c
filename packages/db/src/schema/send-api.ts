import { index, integer, jsonb, pgTable, primaryKey, text } from 'drizzle-orm/pg-core'
import { createdAt, ref } from './columns.ts'
import { apiKeys } from './members.ts'

/**
 * The first answer of each `Idempotency-Key` the HTTP send API saw, per API key, written in
 * the transaction that spools the message: a retry within the replay window gets the same
 * status and body and spools nothing; the same key with another body is refused (422).
 * `request_hash` is SHA-256 of the request body. Rows older than the window are deleted
 * (on insert, for the key, and by the API's sweep).
 */
export const sendApiIdempotency = pgTable(
  'send_api_idempotency',
  {
    apiKeyId: ref()
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    idempotencyKey: text().notNull(),
    requestHash: text().notNull(),
    status: integer().notNull(),
    response: jsonb().notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ columns: [t.apiKeyId, t.idempotencyKey] }),
    index('send_api_idempotency_created_idx').on(t.createdAt),
  ],
)
