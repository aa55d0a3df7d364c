import { LABELS } from '@atmos/lexicon'

/**
 * The label values this labeler publishes (declared in its app.bsky.labeler.service
 * record): two of the cooperative's vocabulary, email.atmos.defs#cooperativeLabel.
 */
export const LABEL_VALUES = {
  verifiedMailOperator: LABELS.verifiedMailOperator,
  relayMember: LABELS.relayMember,
} as const

export type LabelValue = (typeof LABEL_VALUES)[keyof typeof LABEL_VALUES]
