import type { Pool } from '@atmos/db'

/** One audit_log row: who did what to which member and domain, with the request's detail (address, reason…). */
export type AuditEntry = {
  actor: string
  action: string
  did: string
  domain: string | null
  memberId: number
  detail: Record<string, unknown>
}

/** Writes the row in the caller's transaction, so the change and its record commit together. */
export async function audit(sql: Pool, e: AuditEntry): Promise<void> {
  await sql`
    insert into audit_log (actor, action, did, domain, member_id, detail)
    values (${e.actor}, ${e.action}, ${e.did}, ${e.domain}, ${e.memberId}, ${JSON.stringify(e.detail)}::text::jsonb)`
}
