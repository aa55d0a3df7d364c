import type { MemberStatus, Pool } from '@atmos/db'

// The wizard is resumable: /enroll lists the domains the signed-in account holds, each with
// the step it is at and where to continue, worked out from what is recorded (the domain's
// status, the labeler's verdict, the publish audit row, a live credential), not from a
// separate wizard state that could drift from them.

export type EnrolmentStep =
  /** Pending, not published through the wizard: publish the records and check them. */
  | 'records'
  /** Published, the labeler's verdict is not in (or does not hold). */
  | 'labeler'
  /** The labeler's verification holds: activate. */
  | 'activate'
  /** Active without a live SMTP credential. */
  | 'credentials'
  /** Active with a credential: nothing left in the wizard. */
  | 'done'
  /** An operator suspended the domain or its member. */
  | 'suspended'

export type EnrolmentProgress = { domain: string; step: EnrolmentStep; path: string }

/** The account's live domains, by name, with the step each is at. Only the DID's own rows. */
export async function enrolmentProgress(sql: Pool, did: string): Promise<EnrolmentProgress[]> {
  const rows = await sql<
    {
      domain: string
      status: MemberStatus
      memberStatus: MemberStatus
      holds: boolean
      published: boolean
      credential: boolean
    }[]
  >`
    select d.domain, d.status, m.status as "memberStatus",
      coalesce(v.holds, false) as holds,
      exists (select 1 from audit_log a where a.did = m.did and a.domain = d.domain
              and a.action = 'attestation.published') as published,
      exists (select 1 from smtp_credentials c where c.domain_id = d.id and c.revoked_at is null) as credential
    from domains d join members m on m.id = d.member_id
    left join verification_status v on v.did = m.did and v.domain = d.domain
    where m.did = ${did} and d.removed_at is null
    order by d.domain
    limit 100`
  return rows.map((r) => {
    const base = `/enroll/${encodeURIComponent(r.domain)}`
    const step = stepOf(r)
    const path =
      step === 'records'
        ? base
        : step === 'credentials'
          ? `${base}/credentials`
          : step === 'done' || step === 'suspended'
            ? '/account'
            : `${base}/watch`
    return { domain: r.domain, step, path }
  })
}

function stepOf(r: {
  status: MemberStatus
  memberStatus: MemberStatus
  holds: boolean
  published: boolean
  credential: boolean
}): EnrolmentStep {
  if (r.status === 'suspended' || r.memberStatus === 'suspended') return 'suspended'
  if (r.status === 'active') return r.credential ? 'done' : 'credentials'
  if (r.holds) return 'activate'
  return r.published ? 'labeler' : 'records'
}
