import type { Db } from '@atmos/db'
import { type SQL, sql } from 'drizzle-orm'

/**
 * The audit log as the console reads it: newest first, filtered by actor, member DID and
 * action (each exact, each with its own index: audit_log_actor_idx, audit_log_did_idx,
 * audit_log_action_idx, all on (column, at)), a page of 50 continuing below the last id seen.
 */

export const AUDIT_PAGE = 50

export type AuditFilter = { actor?: string; did?: string; action?: string; before?: number }

export type AuditRow = {
  id: number
  at: Date
  actor: string
  action: string
  did: string | null
  domain: string | null
  detail: unknown
}

/** Filter values longer than any actor, DID or action we write are no filter anyone meant. */
export const MAX_FILTER = 2100

/** The page's statement; exported so a test can EXPLAIN it. */
export function auditSql(f: AuditFilter): SQL {
  const where = [
    f.actor ? sql`actor = ${f.actor}` : undefined,
    f.did ? sql`did = ${f.did}` : undefined,
    f.action ? sql`action = ${f.action}` : undefined,
    // Keyset on (at, id): the row the page continues below fixes both.
    f.before ? sql`(at, id) < (select at, id from audit_log where id = ${f.before})` : undefined,
  ].filter((x) => x !== undefined)
  return sql`
    select id::text, at, actor, action, did, domain, detail from audit_log
    where ${where.length ? sql.join(where, sql` and `) : sql`true`}
    order by at desc, id desc limit ${AUDIT_PAGE + 1}`
}

export async function auditPage(db: Db, f: AuditFilter): Promise<{ items: AuditRow[]; next: number | null }> {
  const rows = await db.execute<{
    id: string
    at: Date
    actor: string
    action: string
    did: string | null
    domain: string | null
    detail: unknown
  }>(auditSql(f))
  const items = rows.slice(0, AUDIT_PAGE).map((r) => ({ ...r, id: Number(r.id), at: new Date(r.at) }))
  return { items, next: rows.length > AUDIT_PAGE ? items.at(-1)!.id : null }
}
