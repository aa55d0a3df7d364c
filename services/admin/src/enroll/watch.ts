import type { Pool } from '@atmos/db'
import { heldEnrolment } from '@atmos/enrolment'
import type { CurrentLabel, LabelReader } from '../labels/query.ts'
import { type Account, domainOf, WizardError } from './wizard.ts'

// Step 5's last part: after the attestation is published, what the network says of the
// account (its labels, read from our labeler's public queryLabels, as any client reads them)
// and, for a page that must explain a wait, what the labeler has recorded of this domain.
//
// The order is the labeler's (services/labeler/src/labels/manager.ts labelState):
//  - verified-mail-operator once some domain the DID attests verifies at the labeler;
//  - relay-member only once the member and one of its relay domains are active, that is
//    after the member activates the domain here (activation needs the labeler's verdict).
// The labels are the account's, not the domain's: a member adding a second domain already
// carries both, so the next step (activate) follows this domain's own verdict, not a label.

export const VERIFIED_LABEL = 'verified-mail-operator'
export const MEMBER_LABEL = 'relay-member'

/**
 * Where the member stands: waiting for the labeler's verdict, able to activate, waiting for
 * relay-member after activation, or done.
 */
export type WatchStage = 'verifying' | 'activate' | 'member' | 'done'

export type WatchState = {
  domain: string
  labels: Pick<CurrentLabel, 'val' | 'cts' | 'exp'>[]
  /** verified-mail-operator is on the account. */
  verified: boolean
  /** relay-member is on the account. */
  member: boolean
  /** Why the labels could not be read (the labeler is away or answered nonsense). */
  reason?: string
  /** The labeler's verification of this domain's attestation holds (what activation requires). */
  domainVerified: boolean
  /** The domain is active in the relay (activated). */
  activated: boolean
  stage: WatchStage
  /** Waited longer than the configured bound since publishing (or activating) without getting there. */
  overdue: boolean
  /** Sentences saying what may be holding it up, most likely first; empty when nothing is. */
  diagnosis: string[]
  /** The check that failed at the labeler, when one did: the page offers to check again. */
  failedAtLabeler: boolean
}

export type WatchDeps = { sql: Pool; readLabels: LabelReader; timeoutMs: number; now?: () => number }

type LabelerRecord = {
  seen: boolean
  rejected: string | null
  holds: boolean | null
  outcome: 'pass' | 'fail' | 'temperror' | null
  failed: { check: string; reason: string }[]
}

/** What the labeler's tables hold of the DID's attestation for the domain (the admin shares its database). */
async function labelerRecord(sql: Pool, did: string, domain: string): Promise<LabelerRecord> {
  const [a] = await sql<{ state: string; rejectionReason: string | null }[]>`
    select state, rejection_reason as "rejectionReason" from attestations
    where did = ${did} and rkey = ${domain} and not deleted`
  const [v] = await sql<{ holds: boolean; outcome: 'pass' | 'fail' | 'temperror'; runId: number | null }[]>`
    select holds, last_outcome as outcome, last_run_id::int as "runId" from verification_status
    where did = ${did} and domain = ${domain}`
  const failed = v?.runId
    ? await sql<{ check: string; reason: string }[]>`
        select "check", reason from verification_checks
        where run_id = ${v.runId} and outcome <> 'pass' order by "check" limit 10`
    : []
  return {
    // The labeler keeps a verification row only for a record it had read.
    seen: Boolean(a) || Boolean(v),
    rejected: a?.state === 'rejected' ? (a.rejectionReason ?? 'no reason recorded') : null,
    holds: v ? v.holds : null,
    outcome: v?.outcome ?? null,
    failed: [...failed],
  }
}

/** When the member last published the attestation or activated the domain here (the wait's start). */
async function waitingSince(sql: Pool, did: string, domain: string): Promise<number | null> {
  // Milliseconds as a float: the pools of the admin and of tests parse timestamps differently.
  const [row] = await sql<{ ms: number | null }[]>`
    select (extract(epoch from max(at)) * 1000)::float8 as ms from audit_log
    where did = ${did} and domain = ${domain} and action in ('attestation.published', 'domain.activated')`
  return row?.ms ?? null
}

function diagnose(
  stage: WatchStage,
  read: { ok: boolean; reason?: string },
  rec: LabelerRecord,
  waitingSinceMs: number | null,
): { diagnosis: string[]; failedAtLabeler: boolean } {
  const out: string[] = []
  let failedAtLabeler = false
  if (!read.ok) out.push(`The labeler is unreachable from here: ${read.reason}. Look again in a minute.`)
  // An active domain whose verification stopped holding is waiting on the same things as a new one.
  const verifying = stage === 'verifying' || (stage === 'member' && rec.holds !== true)
  if (verifying) {
    if (rec.rejected) {
      out.push(`The labeler rejected the attestation record: ${rec.rejected}. Publish it again from this wizard.`)
    } else if (!rec.seen && waitingSinceMs === null) {
      out.push('The attestation has not been published from this wizard: check the records, then publish it.')
    } else if (!rec.seen) {
      out.push(
        'The labeler has not seen the record yet. It reads the network (the firehose or Jetstream), which can ' +
          'lag behind your PDS by a minute or more; if your PDS does not announce its repository to the relays ' +
          'of the network, it never arrives.',
      )
    } else if (rec.outcome === 'fail') {
      failedAtLabeler = true
      const which = rec.failed.map((f) => `${f.check}: ${f.reason}`).join('; ')
      out.push(
        `A check failed at the labeler${which ? ` (${which})` : ''}. Fix the record and check again; the labeler ` +
          'verifies again on its own schedule.',
      )
    } else if (rec.outcome === 'temperror') {
      out.push('The labeler could not finish its checks (a temporary DNS error); it tries again by itself.')
    } else {
      out.push('The labeler has the record and is verifying it.')
    }
  }
  if (stage === 'member' && rec.holds === true) {
    out.push(
      'The domain is active; relay-member follows once the labeler has taken in the activation (the relay tells ' +
        'it through its status queue). If it does not come, the operator can look at the labeler.',
    )
  }
  return { diagnosis: out, failedAtLabeler }
}

/** The account's labels and this domain's progress, for the session's DID and a domain it holds. */
export async function watchLabels(deps: WatchDeps, account: Account, input: string): Promise<WatchState> {
  const domain = domainOf(input)
  const held = await heldEnrolment(deps.sql, account.did, domain)
  if (!held) throw new WizardError(`You have not started enrolling ${domain}.`, 404)
  const [read, rec, since] = await Promise.all([
    deps.readLabels(account.did),
    labelerRecord(deps.sql, account.did, domain),
    waitingSince(deps.sql, account.did, domain),
  ])
  const labels = read.ok ? read.labels.map(({ val, cts, exp }) => ({ val, cts, exp })) : []
  const verified = labels.some((l) => l.val === VERIFIED_LABEL)
  const member = labels.some((l) => l.val === MEMBER_LABEL)
  const activated = held.domainStatus === 'active'
  const domainVerified = rec.holds === true
  const stage: WatchStage = activated
    ? verified && member
      ? 'done'
      : 'member'
    : domainVerified
      ? 'activate'
      : 'verifying'
  const now = deps.now?.() ?? Date.now()
  const waiting = stage === 'verifying' || stage === 'member'
  // Without a recorded start (published elsewhere, or long ago) there is nothing to wait for.
  const overdue = waiting && (since === null || now - since >= deps.timeoutMs)
  const { diagnosis, failedAtLabeler } = diagnose(stage, read, rec, since)
  return {
    domain,
    labels,
    verified,
    member,
    ...(read.ok ? {} : { reason: read.reason }),
    domainVerified,
    activated,
    stage,
    overdue,
    diagnosis,
    failedAtLabeler,
  }
}
