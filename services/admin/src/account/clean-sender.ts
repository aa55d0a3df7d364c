import type { Db } from '@atmos/db'
import { type CleanSenderFigures, type CleanSenderThresholds, cleanSenderFigures, percent } from '@atmos/reputation'
import type { LabelsRead } from '../labels/query.ts'
import { count, esc } from './html.ts'

/**
 * The clean-sender label on the account with the figures behind it: whether the labeler
 * publishes it now (as queryLabels says, like the other labels), the member's last 30 days
 * counted as the labeler counts them, and the thresholds (admin.cleanSender, kept equal to
 * the labeler's), so a member sees how far it is from gaining or losing the label.
 */
export type CleanSenderView = {
  /** Null when the labels cannot be read now. */
  held: boolean | null
  figures: CleanSenderFigures
  thresholds: CleanSenderThresholds
}

export async function cleanSenderView(
  db: Db,
  memberId: number,
  labels: LabelsRead,
  thresholds: CleanSenderThresholds,
): Promise<CleanSenderView> {
  const figures = await cleanSenderFigures(db, memberId)
  const held = labels.ok ? labels.labels.some((l) => l.val === 'clean-sender') : null
  return { held, figures, thresholds }
}

/** What would change the label from here, in the member's words. */
function outlook(v: CleanSenderView): string {
  const { figures: f, thresholds: t } = v
  if (v.held === null) return 'Whether you hold it cannot be read now; the figures below are current.'
  if (v.held) {
    return (
      `You hold it. It stays until your hard-bounce rate reaches ${percent(t.negateBounceRate)} or your complaint ` +
      `rate reaches ${percent(t.negateComplaintRate)} over 30 days, or your membership is suspended.`
    )
  }
  const missing: string[] = []
  if (f.outcomes < t.minVolume)
    missing.push(`at least ${count(t.minVolume)} messages in 30 days (you sent ${count(f.outcomes)})`)
  if (f.bounceRate >= t.issueBounceRate) missing.push(`a hard-bounce rate below ${percent(t.issueBounceRate)}`)
  if (f.complaintRate >= t.issueComplaintRate) missing.push(`a complaint rate below ${percent(t.issueComplaintRate)}`)
  if (!missing.length) return 'You do not hold it now; your figures qualify, and it is issued at your next daily check.'
  return `You do not hold it. It is issued with ${missing.join(', ')}.`
}

export function cleanSenderFragment(v: CleanSenderView): string {
  const { figures: f, thresholds: t } = v
  const state = v.held === null ? 'unknown' : v.held ? 'held' : 'not held'
  const row = (what: string, value: string, issue: string, negate: string) =>
    `<tr><th scope="row">${esc(what)}</th><td>${esc(value)}</td><td>${esc(issue)}</td><td>${esc(negate)}</td></tr>`
  return (
    '<section class="clean-sender" aria-labelledby="clean-sender-h">' +
    `<h2 id="clean-sender-h">clean-sender: <span data-testid="clean-sender-state">${esc(state)}</span></h2>` +
    `<p>${esc(outlook(v))}</p>` +
    '<table class="figures"><caption>Your last 30 days, as the labeler counts them</caption>' +
    '<thead><tr><th scope="col">Figure</th><th scope="col">Yours</th><th scope="col">Issued below</th>' +
    '<th scope="col">Negated at</th></tr></thead><tbody>' +
    row('Messages with an outcome', count(f.outcomes), `at least ${count(t.minVolume)}`, '') +
    row(
      'Hard-bounce rate',
      `${percent(f.bounceRate)} (${count(f.hardBounces)})`,
      percent(t.issueBounceRate),
      percent(t.negateBounceRate),
    ) +
    row(
      'Complaint rate',
      `${percent(f.complaintRate)} (${count(f.complaints)} of ${count(f.delivered)} delivered)`,
      percent(t.issueComplaintRate),
      percent(t.negateComplaintRate),
    ) +
    '</tbody></table></section>'
  )
}
