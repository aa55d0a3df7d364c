import { schemaDict } from './generated/lexicons.ts'
import type { CooperativeLabel } from './generated/types/email/atmos/defs.ts'

export type { CooperativeLabel }

/**
 * The cooperative's label vocabulary as `email.atmos.defs#cooperativeLabel` publishes it,
 * read from the schema so that our names cannot drift from the published ones.
 */
export const COOPERATIVE_LABELS: readonly string[] = schemaDict.EmailAtmosDefs.defs.cooperativeLabel.knownValues

function known<V extends string>(value: V): V {
  if (!COOPERATIVE_LABELS.includes(value)) throw new Error(`${value} is not in email.atmos.defs#cooperativeLabel`)
  return value
}

/** The published label values by name. */
export const LABELS = {
  verifiedMailOperator: known('verified-mail-operator'),
  relayMember: known('relay-member'),
  cleanSender: known('clean-sender'),
} as const
