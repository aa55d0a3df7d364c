import type { CheckName, CheckOutcome, Db, MemberStatus } from '@atmos/db'
import { sql } from 'drizzle-orm'

/**
 * Where each of a member's live domains stands: its verification as the labeler last saw
 * it (the run, each check with its reason, when the next run is due), whether the member
 * holds it, its warming and what is left of today's cap, and the suppressions its mail led to.
 */

/**
 * Today's cap of a domain from the start of its warming (ms since the epoch, null for never
 * active), as the relay computes it. The relay's `dailyCapFor` with its configured tiers and
 * standard cap, bound by the caller: the admin must not keep tiers of its own that could
 * drift from what the relay enforces.
 */
export type CapRule = (activatedAt: number | null, now: Date) => { cap: number; ageDays: number; warming: boolean }

export type CheckView = { check: CheckName; outcome: CheckOutcome; reason: string; warnings: string[] }

export type DomainStanding = {
  domain: string
  status: MemberStatus
  statusReason: string | null
  /** The member's attestation for the domain verifies now (verification_status.holds). */
  holds: boolean
  /** Null until the labeler has verified the domain's attestation once. */
  verification: {
    lastRunAt: Date
    outcome: CheckOutcome
    lastPassAt: Date | null
    /** Since when only temporary errors were seen (the grace period runs from here). */
    temperrorSince: Date | null
    nextDueAt: Date | null
    /** The checks of the last run, in the order the labeler runs them. */
    checks: CheckView[]
  } | null
  warming: {
    /** Whole days since activation (0 on the first day); null for a domain never active. */
    day: number | null
    warming: boolean
    cap: number
    sentToday: number
    left: number
    /** When today's count starts again (the relay counts UTC days). */
    resetsAt: Date
  }
  /** Standing suppressions that this domain's mail led to (the list itself is the member's). */
  suppressions: number
  /** Where replies to the domain are forwarded (domains.forward_to); null for nowhere. */
  forwardTo: string | null
}

export type AccountStanding = {
  did: string
  status: MemberStatus
  statusReason: string | null
  domains: DomainStanding[]
  /** All standing entries of the member's suppression list, whatever domain led to them. */
  suppressions: number
}

const CHECK_ORDER: CheckName[] = ['domain_control', 'mx', 'spf', 'dkim', 'dmarc']
const DAY_MS = 86_400_000

export async function accountStanding(
  db: Db,
  memberId: number,
  opts: { capFor: CapRule; now?: Date },
): Promise<AccountStanding | null> {
  const now = opts.now ?? new Date()
  const day = now.toISOString().slice(0, 10)
  const [member] = await db.execute<{ did: string; status: MemberStatus; status_reason: string | null }>(
    sql`select did, status, status_reason from members where id = ${memberId}`,
  )
  if (!member) return null
  // Suppressions "standing" as the relay reads them at RCPT: not lifted, not expired.
  const standing = sql`s.removed_at is null and (s.expires_at is null or s.expires_at > ${now.toISOString()}::timestamptz)`
  const rows = await db.execute<{
    domain: string
    status: MemberStatus
    status_reason: string | null
    activated_ms: number | null
    holds: boolean | null
    last_run_at: string | null
    last_outcome: CheckOutcome | null
    last_pass_at: string | null
    temperror_since: string | null
    next_due_at: string | null
    checks: CheckView[] | null
    sent_today: number | null
    suppressions: string
    forward_to: string | null
  }>(sql`
    select d.domain, d.status, d.status_reason, d.forward_to, (extract(epoch from d.activated_at) * 1000)::float8 as activated_ms,
      vs.holds, vs.last_run_at, vs.last_outcome, vs.last_pass_at, vs.temperror_since, vs.next_due_at,
      (select json_agg(json_build_object('check', c."check", 'outcome', c.outcome, 'reason', c.reason,
                                         'warnings', c.warnings))
       from verification_checks c where c.run_id = vs.last_run_id) as checks,
      v.recipients as sent_today,
      (select count(*) from suppressions s where s.member_id = d.member_id and s.domain_id = d.id and ${standing})
        as suppressions
    from domains d
    join members m on m.id = d.member_id
    left join verification_status vs on vs.did = m.did and vs.domain = d.domain
    left join send_volume v on v.domain_id = d.id and v.day = ${day}::date
    where d.member_id = ${memberId} and d.removed_at is null
    order by d.id`)
  const [total] = await db.execute<{ n: string }>(
    sql`select count(*) as n from suppressions s where s.member_id = ${memberId} and ${standing}`,
  )
  const resetsAt = new Date(Date.parse(`${day}T00:00:00Z`) + DAY_MS)
  return {
    did: member.did,
    status: member.status,
    statusReason: member.status_reason,
    suppressions: Number(total?.n ?? 0),
    domains: rows.map((r) => {
      const { cap, ageDays, warming } = opts.capFor(r.activated_ms, now)
      const sentToday = r.sent_today ?? 0
      return {
        domain: r.domain,
        status: r.status,
        statusReason: r.status_reason,
        holds: r.holds === true,
        verification:
          r.last_run_at && r.last_outcome
            ? {
                lastRunAt: new Date(r.last_run_at),
                outcome: r.last_outcome,
                lastPassAt: r.last_pass_at ? new Date(r.last_pass_at) : null,
                temperrorSince: r.temperror_since ? new Date(r.temperror_since) : null,
                nextDueAt: r.next_due_at ? new Date(r.next_due_at) : null,
                checks: (r.checks ?? []).sort((a, b) => CHECK_ORDER.indexOf(a.check) - CHECK_ORDER.indexOf(b.check)),
              }
            : null,
        warming: {
          day: r.activated_ms === null ? null : ageDays,
          warming,
          cap,
          sentToday,
          left: Math.max(0, cap - sentToday),
          resetsAt,
        },
        suppressions: Number(r.suppressions),
        forwardTo: r.forward_to,
      }
    }),
  }
}
