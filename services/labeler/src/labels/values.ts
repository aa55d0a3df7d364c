/** The label values this labeler publishes, as declared in its app.bsky.labeler.service record. */
export const LABEL_VALUES = {
  verifiedMailOperator: 'verified-mail-operator',
  relayMember: 'relay-member',
} as const

export type LabelValue = (typeof LABEL_VALUES)[keyof typeof LABEL_VALUES]
