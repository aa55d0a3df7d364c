// Operator commands for feedback and reputation, run through `fbl-ingest` (src/cli.ts). A
// member is named by its DID or by one of the domains it holds; reputation, suppressions and
// status are the member's, over all its domains, and each line shows them with their status.
//   aggregate add (--did D | --domain M) --provider gmail --from ISO --to ISO --rate 0.002 [--volume N]
//   suppressions list [--did D | --domain M]
//   suppressions remove (--did D | --domain M) --address A
//   reinstate (--did D | --domain M) [--reason TEXT]
import { parseArgs } from 'node:util'
import { loadConfig } from '@atmos/config'
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
import { fblIngestConfigSchema } from './config.ts'

export const OPS_USAGE = `usage:
  fbl-ingest aggregate add (--did DID | --domain DOMAIN) --provider gmail --from ISO --to ISO --rate 0.002 [--volume N]
  fbl-ingest suppressions list [--did DID | --domain DOMAIN]
  fbl-ingest suppressions remove (--did DID | --domain DOMAIN) --address ADDRESS
  fbl-ingest reinstate (--did DID | --domain DOMAIN) [--reason TEXT]
A member is named by its DID or by a domain it holds; its reputation, suppressions and status are over all its domains.`

class UsageError extends Error {}

function actor(): string {
  return `operator:${process.env.USER ?? process.env.LOGNAME ?? 'cli'}`
}

/** A domain the member holds, as the lines show it. */
type DomainLine = { domain: string; status: string; activatedAt: string | null }
type Member = { id: number; did: string; domains: DomainLine[] }

/** The member named by --did, or by --domain (a domain it holds now). */
async function memberNamed(db: Db, opts: { did?: string | undefined; domain?: string | undefined }): Promise<Member> {
  if (opts.did && opts.domain) throw new UsageError('give --did or --domain, not both')
  if (!opts.did && !opts.domain) throw new UsageError('--did or --domain is required')
  const domain = opts.domain?.trim().toLowerCase().replace(/\.$/, '')
  const [m] = opts.did
    ? await db.select({ id: members.id, did: members.did }).from(members).where(eq(members.did, opts.did))
    : await db
        .select({ id: members.id, did: members.did })
        .from(domains)
        .innerJoin(members, eq(members.id, domains.memberId))
        .where(and(eq(domains.domain, domain!), isNull(domains.removedAt)))
  if (!m) throw new UsageError(opts.did ? `no member ${opts.did}` : `no member holds ${domain}`)
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

function required(name: string, value: string | undefined): string {
  if (!value) throw new UsageError(`--${name} is required`)
  return value
}

function isoDate(name: string, value: string | undefined): Date {
  const d = new Date(required(name, value))
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${name} must be an ISO date, got ${value}`)
  return d
}

const OPTIONS = {
  did: { type: 'string' },
  domain: { type: 'string' },
  provider: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  rate: { type: 'string' },
  volume: { type: 'string' },
  address: { type: 'string' },
  reason: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

export async function main(argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>>
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS })
  } catch (err) {
    // An unknown option or one missing its value: a usage error like any other.
    process.stderr.write(`${(err as Error).message}\n${OPS_USAGE}\n`)
    return 64
  }
  const { positionals, values } = parsed
  const command = positionals.join(' ')
  if (values.help) {
    process.stdout.write(`${OPS_USAGE}\n`)
    return 0
  }
  if (!['aggregate add', 'suppressions list', 'suppressions remove', 'reinstate'].includes(command)) {
    process.stderr.write(`${OPS_USAGE}\n`)
    return 64
  }
  const config = loadConfig(fblIngestConfigSchema, { env })
  const db = createDb({ url: config.database.url, poolMax: 2, connectTimeout: config.database.connectTimeout })
  try {
    if (command === 'aggregate add') {
      const m = await memberNamed(db, values)
      const rate = Number(required('rate', values.rate))
      const volume = values.volume === undefined ? null : Number(values.volume)
      const id = await recordAggregateFeedback(db, {
        memberId: m.id,
        provider: required('provider', values.provider),
        periodStart: isoDate('from', values.from),
        periodEnd: isoDate('to', values.to),
        complaintRate: rate,
        volume,
        recordedBy: actor(),
      })
      const rep = await computeReputation(db, m.id, { thresholds: config.fblIngest.thresholds })
      console.log(
        JSON.stringify({ recorded: id, member: m.did, domains: m.domains, level: rep.level, reasons: rep.reasons }),
      )
      return 0
    }
    if (command === 'suppressions list') {
      const m = values.did || values.domain ? await memberNamed(db, values) : undefined
      const entries = await listSuppressions(db, m ? { memberId: m.id } : {})
      const dids = new Map<number, string>()
      if (m) dids.set(m.id, m.did)
      else {
        const ids = [...new Set(entries.map((s) => s.memberId))]
        if (ids.length) {
          const rows = await db
            .select({ id: members.id, did: members.did })
            .from(members)
            .where(inArray(members.id, ids))
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
    }
    if (command === 'suppressions remove') {
      const m = await memberNamed(db, values)
      const address = required('address', values.address)
      const removed = await removeSuppression(db, { memberId: m.id, address, by: actor() })
      console.log(JSON.stringify({ member: m.did, address: address.toLowerCase(), removed }))
      return removed ? 0 : 1
    }
    // reinstate
    const m = await memberNamed(db, values)
    const redis = createRedis(config.redis.url)
    redis.on('error', () => {})
    const queue = new TypedQueue(memberStatusChanged, redis, config.redis.prefix)
    try {
      const r = await setMemberStatus(db, queue, m.did, 'active', values.reason ?? 'reinstated by an operator', actor())
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
  } catch (err) {
    if (err instanceof UsageError || err instanceof AggregateInputError) {
      process.stderr.write(`${err.message}\n`)
      return 64
    }
    throw err
  } finally {
    await db.$client.end({ timeout: 5 })
  }
}
