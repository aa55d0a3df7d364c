// What the feedback and reputation commands do once their arguments are settled (src/ops-cli.ts
// declares them and imports this module only when one runs, so that help and usage errors load
// the argument parser alone). A member is named by its DID or by one of the domains it holds;
// reputation, suppressions and status are the member's, over all its domains.
import { loadConfig, UsageError } from '@atmos/config'
import { createDb, type Db, domains, members } from '@atmos/db'
import { createRedis, memberStatusChanged, TypedQueue } from '@atmos/queues'
import {
  AggregateInputError,
  computeReputation,
  listSuppressions,
  recordAggregateFeedback,
  removeSuppression,
  setMemberStatus,
} from '@atmos/reputation'
import { and, asc, eq, inArray, isNull } from 'drizzle-orm'
import { type FblIngestConfig, fblIngestConfigSchema } from './config.ts'

function actor(): string {
  return `operator:${process.env.USER ?? process.env.LOGNAME ?? 'cli'}`
}

/** A domain the member holds, as the lines show it. */
type DomainLine = { domain: string; status: string; activatedAt: string | null }
type Member = { id: number; did: string; domains: DomainLine[] }

/** The member named by a DID or by a domain it holds now. */
async function memberNamed(db: Db, who: string): Promise<Member> {
  const byDid = who.startsWith('did:')
  const domain = who.trim().toLowerCase().replace(/\.$/, '')
  const [m] = byDid
    ? await db.select({ id: members.id, did: members.did }).from(members).where(eq(members.did, who))
    : await db
        .select({ id: members.id, did: members.did })
        .from(domains)
        .innerJoin(members, eq(members.id, domains.memberId))
        .where(and(eq(domains.domain, domain), isNull(domains.removedAt)))
  if (!m) throw new UsageError(byDid ? `no member ${who}` : `no member holds ${domain}`)
  return { ...m, domains: (await domainsOf(db, [m.id])).get(m.id) ?? [] }
}

/** The live domains of each member, oldest first. */
async function domainsOf(db: Db, memberIds: number[]): Promise<Map<number, DomainLine[]>> {
  const out = new Map<number, DomainLine[]>()
  if (!memberIds.length) return out
  const rows = await db
    .select()
    .from(domains)
    .where(and(inArray(domains.memberId, memberIds), isNull(domains.removedAt)))
    .orderBy(asc(domains.id))
  for (const d of rows) {
    const line = { domain: d.domain, status: d.status, activatedAt: d.activatedAt?.toISOString() ?? null }
    out.set(d.memberId, [...(out.get(d.memberId) ?? []), line])
  }
  return out
}

/** Runs a command with the configuration and a database, closed after it. */
async function withDb(run: (config: FblIngestConfig, db: Db) => Promise<number>): Promise<number> {
  const config = loadConfig(fblIngestConfigSchema)
  const db = createDb({ url: config.database.url, poolMax: 2, connectTimeout: config.database.connectTimeout })
  try {
    return await run(config, db)
  } catch (err) {
    // A rate out of range, a period that ends before it starts: the operator's to correct.
    if (err instanceof AggregateInputError) throw new UsageError(err.message)
    throw err
  } finally {
    await db.$client.end({ timeout: 5 })
  }
}

export type AggregateInput = {
  provider: string
  periodStart: Date
  periodEnd: Date
  complaintRate: number
  volume: number | null
}

/** `aggregate add`: records the rate and prints the reputation level it leads to, as one JSON line. */
export function aggregateAdd(who: string, input: AggregateInput): Promise<number> {
  return withDb(async (config, db) => {
    const m = await memberNamed(db, who)
    const id = await recordAggregateFeedback(db, { memberId: m.id, ...input, recordedBy: actor() })
    const rep = await computeReputation(db, m.id, { thresholds: config.fblIngest.thresholds })
    console.log(
      JSON.stringify({ recorded: id, member: m.did, domains: m.domains, level: rep.level, reasons: rep.reasons }),
    )
    return 0
  })
}

/** `suppressions list`: every member's, or one member's, one JSON line each. */
export function suppressionsList(who: string | undefined): Promise<number> {
  return withDb(async (_config, db) => {
    const m = who ? await memberNamed(db, who) : undefined
    const entries = await listSuppressions(db, m ? { memberId: m.id } : {})
    if (!entries.length) process.stderr.write(m ? `no suppressions for ${m.did}\n` : 'no suppressions\n')
    const dids = new Map<number, string>()
    if (m) dids.set(m.id, m.did)
    else {
      const ids = [...new Set(entries.map((s) => s.memberId))]
      if (ids.length) {
        const rows = await db.select({ id: members.id, did: members.did }).from(members).where(inArray(members.id, ids))
        for (const r of rows) dids.set(r.id, r.did)
      }
    }
    for (const s of entries) {
      console.log(
        JSON.stringify({
          // The list is the member's over all its domains; `domain` is the one whose mail led to the entry.
          member: dids.get(s.memberId) ?? s.memberId,
          domain: s.domain,
          address: s.address,
          reason: s.reason,
          detail: s.detail,
          since: s.createdAt.toISOString(),
          expires: s.expiresAt?.toISOString() ?? null,
        }),
      )
    }
    return 0
  })
}

/** `suppressions remove`: exit 1 when the address was not suppressed. */
export function suppressionsRemove(who: string, address: string): Promise<number> {
  return withDb(async (_config, db) => {
    const m = await memberNamed(db, who)
    const removed = await removeSuppression(db, { memberId: m.id, address, by: actor() })
    console.log(JSON.stringify({ member: m.did, address: address.toLowerCase(), removed }))
    return removed ? 0 : 1
  })
}

/** `reinstate`: active again, and the labeler told; exit 1 when Redis did not take the event. */
export function reinstate(who: string, reason: string): Promise<number> {
  return withDb(async (config, db) => {
    const m = await memberNamed(db, who)
    const redis = createRedis(config.redis.url)
    redis.on('error', () => {})
    const queue = new TypedQueue(memberStatusChanged, redis, config.redis.prefix)
    try {
      const r = await setMemberStatus(db, queue, m.did, 'active', reason, actor())
      console.log(
        JSON.stringify({
          member: m.did,
          domains: m.domains,
          from: r.from,
          to: r.to,
          changed: r.changed,
          changeId: r.changeId,
          enqueued: r.enqueued,
        }),
      )
      if (r.changed && !r.enqueued) {
        process.stderr.write('recorded, but Redis did not take the event: the labeler has not re-issued relay-member\n')
        return 1
      }
      return 0
    } finally {
      await queue.close()
      await redis.quit().catch(() => redis.disconnect())
    }
  })
}
