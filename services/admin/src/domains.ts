import { type Db, domains, type MemberStatus } from '@atmos/db'
import { and, asc, inArray, isNull } from 'drizzle-orm'

const DAY_MS = 86_400_000

/** One of a member's sending domains as the member and operator APIs show it. */
export type DomainView = {
  domain: string
  status: MemberStatus
  statusReason: string | null
  /**
   * Each domain warms on its own, from its first active day: `day` 0 is that day (the relay's
   * daily cap follows the day); both null for a domain never active.
   */
  warming: { since: string | null; day: number | null }
  /** Only in lists that include given-up and moved domains. */
  removedAt?: string
  removedReason?: string | null
}

/**
 * The domains of each member, oldest first: the live ones, or with `removed` those given up
 * or moved to another account as well (their rows stay, with when and why).
 */
export async function domainsOf(
  db: Db,
  memberIds: number[],
  opts: { removed?: boolean; now?: Date } = {},
): Promise<Map<number, DomainView[]>> {
  const out = new Map<number, DomainView[]>()
  if (!memberIds.length) return out
  const now = opts.now ?? new Date()
  const rows = await db
    .select()
    .from(domains)
    .where(and(inArray(domains.memberId, memberIds), opts.removed ? undefined : isNull(domains.removedAt)))
    .orderBy(asc(domains.id))
  for (const d of rows) {
    const view: DomainView = {
      domain: d.domain,
      status: d.status,
      statusReason: d.statusReason,
      warming: {
        since: d.activatedAt?.toISOString() ?? null,
        day: d.activatedAt ? Math.max(0, Math.floor((now.getTime() - d.activatedAt.getTime()) / DAY_MS)) : null,
      },
      ...(d.removedAt ? { removedAt: d.removedAt.toISOString(), removedReason: d.removedReason } : {}),
    }
    out.set(d.memberId, [...(out.get(d.memberId) ?? []), view])
  }
  return out
}

export async function memberDomains(db: Db, memberId: number, opts: { removed?: boolean } = {}): Promise<DomainView[]> {
  return (await domainsOf(db, [memberId], opts)).get(memberId) ?? []
}
