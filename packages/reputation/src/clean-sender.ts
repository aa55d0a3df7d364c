import type { Executor } from './executor.ts'
import { windowFigures } from './reputation.ts'
import { DEFAULT_THRESHOLDS, percent } from './thresholds.ts'

/**
 * When the clean-sender label is issued and when it is negated. Two thresholds a rate, so
 * that a member whose rates hover near one limit does not gain and lose the label daily:
 * issued only when both rates are below `issue*` over enough volume, negated only when a
 * rate reaches `negate*`; in between, the label stays as it is.
 */
export type CleanSenderThresholds = {
  /** Messages with a final outcome (delivered or refused) in 30 days before the label is issued. */
  minVolume: number
  issueBounceRate: number
  negateBounceRate: number
  issueComplaintRate: number
  negateComplaintRate: number
}

/** Well below the suspension thresholds: negation comes at the warning levels, issue at less than half of them. */
export const DEFAULT_CLEAN_SENDER: CleanSenderThresholds = {
  minVolume: 100,
  issueBounceRate: 0.02,
  negateBounceRate: DEFAULT_THRESHOLDS.bounceWarn,
  issueComplaintRate: 0.0005,
  negateComplaintRate: DEFAULT_THRESHOLDS.complaintWarn,
}

export const CLEAN_SENDER_WINDOW_MS = 30 * 86_400_000

/** The 30-day figures the label follows. */
export type CleanSenderFigures = {
  since: Date
  until: Date
  delivered: number
  /** Messages with a final outcome: delivered or refused by the MX. */
  outcomes: number
  hardBounces: number
  /** Complaints, with those aggregate figures stand for. */
  complaints: number
  bounceRate: number
  complaintRate: number
}

/**
 * The member's last 30 days, as reputation counts them (verified feedback only, aggregate
 * figures included). Unlike the suspension windows, a reinstatement does not start them
 * afresh: the label says the last 30 days were clean, and a suspension in them says otherwise.
 */
export async function cleanSenderFigures(
  db: Executor,
  memberId: number,
  now = new Date(),
): Promise<CleanSenderFigures> {
  const since = new Date(now.getTime() - CLEAN_SENDER_WINDOW_MS)
  const f = await windowFigures(db, memberId, '30d', since, now, DEFAULT_THRESHOLDS)
  return {
    since,
    until: now,
    delivered: f.delivered,
    outcomes: f.delivered + f.refused,
    hardBounces: f.hardBounces,
    complaints: f.complaints + Math.round(f.aggregateComplaints),
    bounceRate: f.bounceRate,
    complaintRate: f.complaintRate,
  }
}

export type CleanSenderDecision = { held: boolean; reason: string }

/** The figures in words, for the label's recorded reason and the member's account. */
export function describeCleanSenderFigures(f: CleanSenderFigures, t: CleanSenderThresholds): string {
  return (
    `30 days: ${f.outcomes} messages (min ${t.minVolume}), ` +
    `hard-bounce rate ${percent(f.bounceRate)} (${f.hardBounces}; issue below ${percent(t.issueBounceRate)}, negate at ${percent(t.negateBounceRate)}), ` +
    `complaint rate ${percent(f.complaintRate)} (${f.complaints} of ${f.delivered} delivered; issue below ${percent(t.issueComplaintRate)}, negate at ${percent(t.negateComplaintRate)})`
  )
}

/**
 * Whether the label should be held, given whether it is held now (`current`) and whether the
 * DID may hold it at all (`eligible`: an active relay member). The reason names the figures.
 */
export function decideCleanSender(
  current: boolean,
  eligible: boolean,
  f: CleanSenderFigures,
  t: CleanSenderThresholds,
): CleanSenderDecision {
  const figures = describeCleanSenderFigures(f, t)
  if (!eligible) return { held: false, reason: 'clean-sender: not an active relay member' }
  if (f.bounceRate >= t.negateBounceRate) {
    return { held: false, reason: `clean-sender negated: hard-bounce rate reached the negate threshold; ${figures}` }
  }
  if (f.complaintRate >= t.negateComplaintRate) {
    return { held: false, reason: `clean-sender negated: complaint rate reached the negate threshold; ${figures}` }
  }
  if (current) return { held: true, reason: `clean-sender kept: ${figures}` }
  const clean = f.outcomes >= t.minVolume && f.bounceRate < t.issueBounceRate && f.complaintRate < t.issueComplaintRate
  return { held: clean, reason: `clean-sender ${clean ? 'issued' : 'not issued'}: ${figures}` }
}
