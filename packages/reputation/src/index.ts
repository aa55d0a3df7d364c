export { type AggregateInput, AggregateInputError, recordAggregateFeedback } from './aggregate.ts'
export {
  CLEAN_SENDER_WINDOW_MS,
  type CleanSenderDecision,
  type CleanSenderFigures,
  type CleanSenderThresholds,
  cleanSenderFigures,
  DEFAULT_CLEAN_SENDER,
  decideCleanSender,
  describeCleanSenderFigures,
} from './clean-sender.ts'
export { type Enforcement, enforceReputation } from './enforce.ts'
export { type FeedbackEventInput, recordFeedbackEvent, recordFeedbackEventOnce } from './events.ts'
export type { Executor } from './executor.ts'
export {
  computeReputation,
  type Reputation,
  type ReputationOptions,
  WINDOWS,
  type WindowFigures,
  type WindowName,
} from './reputation.ts'
export {
  type DomainStatusChangeResult,
  notifyStatusChange,
  republishStatusChanges,
  type StatusChangeResult,
  type StatusQueue,
  setDomainStatus,
  setMemberStatus,
  statusJobId,
  UnknownDomainError,
  UnknownMemberError,
} from './status.ts'
export {
  activeSuppression,
  DEFAULT_BOUNCE_SUPPRESSION_MS,
  listSuppressions,
  removeSuppression,
  type SuppressInput,
  type Suppression,
  type SuppressionReason,
  suppress,
} from './suppressions.ts'
export { DEFAULT_THRESHOLDS, type Level, levelFor, percent, type Thresholds } from './thresholds.ts'
export {
  decideSpike,
  decideSpray,
  decideThrottle,
  describeThrottle,
  isThrottleMode,
  SPIKE_HISTORY_DAYS,
  type SpikeEvidence,
  type SpikeThresholds,
  type SprayEvidence,
  type SprayThresholds,
  spikeLimit,
  THROTTLE_ACTIONS,
  THROTTLE_MODES,
  THROTTLE_RULES,
  type ThrottleAction,
  type ThrottleDecision,
  type ThrottleFigures,
  type ThrottleMode,
  type ThrottleRule,
  type ThrottleThresholds,
} from './throttle-rules.ts'
