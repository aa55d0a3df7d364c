// Throttle rules: the step before suspension. The fixed thresholds (bounce and complaint
// rates, warming caps) judge what a domain has already done; these look at what it is doing
// right now against its own past, and answer with a deferral (451 4.7.1) that a legitimate
// sender's MTA simply retries, never with a 5xx or a suspension. Each rule has a mode:
// `off`, `shadow` (decide and record what would have been done, accept anyway) and
// `enforce` (defer). Pure functions: the relay reads the figures, these decide.

import { THROTTLE_ACTIONS, THROTTLE_RULES } from '@atmos/db'

export { THROTTLE_ACTIONS, THROTTLE_RULES }

export const THROTTLE_MODES = ['off', 'shadow', 'enforce'] as const
export type ThrottleMode = (typeof THROTTLE_MODES)[number]
export type ThrottleRule = (typeof THROTTLE_RULES)[number]
/** What a recorded decision did: deferred the recipient (enforce), or would have (shadow). */
export type ThrottleAction = (typeof THROTTLE_ACTIONS)[number]

/** How many days of a domain's past its current hour is held against. */
export const SPIKE_HISTORY_DAYS = 14

/**
 * spike: recipients in the last hour above `factor` times the domain's busiest hour in the
 * 14 days before the last 24 hours, and above `floor` whatever the history (a quiet or new
 * domain is never throttled by tiny numbers; warming caps bound new domains' days).
 */
export type SpikeThresholds = { mode: ThrottleMode; factor: number; floor: number }

/**
 * spray: once the last hour holds at least `floor` recipients, more than `maxDomains`
 * distinct recipient domains, or a share of distinct domains per recipient above
 * `maxRatio` (a scraped list reaches one address at each of many domains; a real audience
 * concentrates on a few large providers).
 */
export type SprayThresholds = { mode: ThrottleMode; floor: number; maxDomains: number; maxRatio: number }

export type ThrottleThresholds = { spike: SpikeThresholds; spray: SprayThresholds }

/** What the rules are decided on, for one sending domain; counts include the submission being checked. */
export type ThrottleFigures = {
  /** Recipients accepted in the last hour. */
  hourRecipients: number
  /** Distinct recipient domains among them (an upper bound: see the relay's throttle.ts). */
  hourDomains: number
  /** Recipients in the busiest clock hour of the history window; 0 for a domain without history. */
  peakHour: number
}

export type SpikeEvidence = {
  window: '1h'
  recipients: number
  peakHour: number
  historyDays: number
  factor: number
  floor: number
  limit: number
}

export type SprayEvidence = {
  window: '1h'
  recipients: number
  domains: number
  ratio: number
  floor: number
  maxDomains: number
  maxRatio: number
}

export type ThrottleDecision =
  | { rule: 'spike'; mode: 'shadow' | 'enforce'; action: ThrottleAction; figures: SpikeEvidence }
  | { rule: 'spray'; mode: 'shadow' | 'enforce'; action: ThrottleAction; figures: SprayEvidence }

/** The hourly limit spike allows a domain: the larger of the floor and factor × its busiest hour. */
export function spikeLimit(t: Pick<SpikeThresholds, 'factor' | 'floor'>, peakHour: number): number {
  return Math.max(t.floor, Math.floor(t.factor * Math.max(0, peakHour)))
}

/** The spike rule's evidence when it fires, else null. */
export function decideSpike(t: SpikeThresholds, f: ThrottleFigures): SpikeEvidence | null {
  if (t.mode === 'off') return null
  const limit = spikeLimit(t, f.peakHour)
  if (f.hourRecipients <= limit) return null
  return {
    window: '1h',
    recipients: f.hourRecipients,
    peakHour: f.peakHour,
    historyDays: SPIKE_HISTORY_DAYS,
    factor: t.factor,
    floor: t.floor,
    limit,
  }
}

/** The spray rule's evidence when it fires, else null. */
export function decideSpray(t: SprayThresholds, f: ThrottleFigures): SprayEvidence | null {
  if (t.mode === 'off' || f.hourRecipients <= 0 || f.hourRecipients < t.floor) return null
  // Distinct domains can never exceed recipients; an upper-bound estimate is clamped to it.
  const domains = Math.min(f.hourDomains, f.hourRecipients)
  const ratio = domains / f.hourRecipients
  if (domains <= t.maxDomains && ratio <= t.maxRatio) return null
  return {
    window: '1h',
    recipients: f.hourRecipients,
    domains,
    ratio: Math.round(ratio * 1000) / 1000,
    floor: t.floor,
    maxDomains: t.maxDomains,
    maxRatio: t.maxRatio,
  }
}

const actionOf = (mode: 'shadow' | 'enforce'): ThrottleAction => (mode === 'enforce' ? 'deferred' : 'would_defer')

/** Every rule that fires on these figures, in rule order (spike first). */
export function decideThrottle(t: ThrottleThresholds, f: ThrottleFigures): ThrottleDecision[] {
  const out: ThrottleDecision[] = []
  const spike = decideSpike(t.spike, f)
  if (spike && t.spike.mode !== 'off') {
    out.push({ rule: 'spike', mode: t.spike.mode, action: actionOf(t.spike.mode), figures: spike })
  }
  const spray = decideSpray(t.spray, f)
  if (spray && t.spray.mode !== 'off') {
    out.push({ rule: 'spray', mode: t.spray.mode, action: actionOf(t.spray.mode), figures: spray })
  }
  return out
}

/**
 * The text of a deferral (after `451 4.7.1 `): the rule's name first, then the figures that
 * fired it and what the limit was, so that the member can tell a spike from a spray and
 * how far over it is. Only the domain's own counts: nothing about other members.
 */
export function describeThrottle(domain: string, d: ThrottleDecision): string {
  if (d.rule === 'spike') {
    const f = d.figures
    return `spike: ${domain} sent ${f.recipients} recipients in the last hour, over its limit of ${f.limit} (${f.factor} x its busiest hour in ${f.historyDays} days, ${f.peakHour}; at least ${f.floor}); try again later`
  }
  const f = d.figures
  return `spray: ${domain} sent to ${f.domains} distinct recipient domains among ${f.recipients} recipients in the last hour (at most ${f.maxDomains} domains, ratio ${f.ratio} of at most ${f.maxRatio}); try again later`
}

/** True for a value that is a throttle mode (config, query filters). */
export function isThrottleMode(v: string): v is ThrottleMode {
  return (THROTTLE_MODES as readonly string[]).includes(v)
}
