import { LABELS } from '@atmos/lexicon'

/**
 * The label values this labeler publishes (declared in its app.bsky.labeler.service
 * record): the cooperative's vocabulary, email.atmos.defs#cooperativeLabel.
 */
export const LABEL_VALUES = {
  verifiedMailOperator: LABELS.verifiedMailOperator,
  relayMember: LABELS.relayMember,
  cleanSender: LABELS.cleanSender,
} as const

export type LabelValue = (typeof LABEL_VALUES)[keyof typeof LABEL_VALUES]
