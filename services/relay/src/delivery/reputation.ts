import type { SmtpReply } from '@atmos/mail-feedback'

const THROTTLE_TEXT =
  /try again later|rate limit|rate-limit|too many|throttl|unusual rate|temporarily deferred|reputation/i

/**
 * A 4xx that says the site is holding back our sending as a whole (Gmail's
 * `421 4.7.28 … unusual rate`, Yahoo's `421 4.7.0 [TSS04] … try again later`, Outlook's
 * `451 4.7.500 … Server busy`), not something about one recipient. The site then runs
 * slower for every process, instead of every queued message hammering it in turn.
 */
export function isReputationDeferral(reply: SmtpReply): boolean {
  if (reply.code < 400 || reply.code >= 500) return false
  if (reply.code === 421) return true
  if (reply.enhanced?.startsWith('4.7.')) return true
  return THROTTLE_TEXT.test(reply.text ?? '')
}
