import { bigint, customType, timestamp } from 'drizzle-orm/pg-core'

// Column shapes used across the schema, so every table spells them the same way.

export const id = () => bigint({ mode: 'number' }).primaryKey().generatedAlwaysAsIdentity()
export const ref = () => bigint({ mode: 'number' })
export const at = () => timestamp({ withTimezone: true, mode: 'date' })
export const createdAt = () => at().notNull().defaultNow()

/** Raw bytes: message bodies, signatures, encrypted keys. */
export const bytea = customType<{ data: Buffer; driverData: Buffer }>({
  dataType: () => 'bytea',
})

/** SQL `IN (...)` list for a CHECK constraint over a closed set of strings. */
export const oneOf = (values: readonly string[]) => values.map((v) => `'${v}'`).join(', ')
