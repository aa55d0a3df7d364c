// Operator commands for feedback and reputation, run through `fbl-ingest` (src/cli.ts). A
// member is named by its DID or by one of the domains it holds; reputation, suppressions and
// status are the member's, over all its domains, and each line shows them with their status.
//   aggregate add <did|domain> --provider gmail --from ISO --to ISO --rate 0.002 [--volume N]
//   suppressions list [<did|domain>]
//   suppressions remove <did|domain> <address>
//   reinstate <did|domain> [--reason TEXT]
// The older `--did D` / `--domain M` / `--address A` forms still work, with a deprecation line.
import {
  type Command,
  type CommandContext,
  type CommandTree,
  command,
  loadConfig,
  type OptionSpec,
  type Parsed,
  subject,
  UsageError,
} from '@atmos/config'
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
async function memberNamed(db: Db, who: string | undefined): Promise<Member> {
  if (!who) throw new UsageError('a DID or a domain is required')
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

function required(name: string, value: string | undefined): string {
  if (!value) throw new UsageError(`--${name} is required`)
  return value
}

function isoDate(name: string, value: string | undefined): Date {
  const d = new Date(required(name, value))
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${name} must be an ISO date, got ${value}`)
  return d
}

/** A feedback command: configuration and database are set up once help and usage are settled. */
function opsCommand<O extends Record<string, OptionSpec>>(
  c: Omit<Command<O>, 'run'> & {
    run: (config: FblIngestConfig, db: Db, parsed: Parsed<O>, ctx: CommandContext) => Promise<number>
  },
): Command<O> {
  return command<O>({
    ...c,
    async run(parsed, ctx) {
      const config = loadConfig(fblIngestConfigSchema)
      const db = createDb({ url: config.database.url, poolMax: 2, connectTimeout: config.database.connectTimeout })
      try {
        return await c.run(config, db, parsed, ctx)
      } catch (err) {
        // A rate out of range, a period that ends before it starts: the operator's to correct.
        if (err instanceof AggregateInputError) throw new UsageError(err.message)
        throw err
      } finally {
        await db.$client.end({ timeout: 5 })
      }
    },
  })
}

const WHO = {
  name: '<did|domain>',
  help: 'the member: its DID, or a domain it holds (its reputation, suppressions and status are over all its domains)',
}
const OLD_WHO = {
  did: { type: 'string', value: 'DID', help: 'deprecated: give <did|domain> as an argument' },
  domain: { type: 'string', value: 'DOMAIN', help: 'deprecated: give <did|domain> as an argument' },
} as const

/** The member's DID or domain, from the argument or (deprecated) --did / --domain. */
function who(ctx: CommandContext, positional: string | undefined, values: { did?: string; domain?: string }) {
  return subject(ctx, positional, { did: values.did, domain: values.domain }, '<did|domain>')
}

const aggregateAdd = opsCommand({
  usage: '<did|domain> --provider gmail --from ISO --to ISO --rate 0.002 [--volume N]',
  help:
    "Records a provider's aggregate complaint rate for a member over a period (e.g. from Gmail's Postmaster\n" +
    'Tools) and prints, as one JSON line, the reputation level it now has and why.',
  args: [WHO],
  options: {
    provider: { type: 'string', value: 'NAME', help: 'who reported the rate, e.g. gmail (required)' },
    from: { type: 'string', value: 'ISO', help: 'start of the period, an ISO date (required)' },
    to: { type: 'string', value: 'ISO', help: 'end of the period, an ISO date (required)' },
    rate: { type: 'string', value: 'RATE', help: 'complaint rate as a fraction, e.g. 0.002 for 0.2% (required)' },
    volume: { type: 'string', value: 'N', help: 'messages the rate is over, when known' },
    ...OLD_WHO,
  },
  async run(config, db, { values, positionals }, ctx) {
    const m = await memberNamed(db, who(ctx, positionals[0], values))
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
  },
})

const suppressionsList = opsCommand({
  usage: '[<did|domain>]',
  help:
    "Suppressed addresses, one JSON line each (every member's, or one member's). With none, stdout\n" +
    'stays empty (for scripts) and stderr says "no suppressions".',
  args: [WHO],
  options: OLD_WHO,
  async run(_config, db, { values, positionals }, ctx) {
    const named = who(ctx, positionals[0], values)
    const m = named ? await memberNamed(db, named) : undefined
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
  },
})

const suppressionsRemove = opsCommand({
  usage: '<did|domain> <address>',
  help: 'Lets the member send to the address again. Exit 1 when it was not suppressed.',
  args: [WHO, { name: '<address>', help: 'the suppressed recipient address' }],
  options: {
    ...OLD_WHO,
    address: { type: 'string', value: 'ADDRESS', help: 'deprecated: give <address> as an argument' },
  },
  async run(_config, db, { values, positionals }, ctx) {
    const byFlag = values.did !== undefined || values.domain !== undefined
    const rest = byFlag ? positionals : positionals.slice(1)
    const expected = 2 - Number(byFlag) - Number(values.address !== undefined)
    if (positionals.length > expected) throw new UsageError(`unexpected argument ${positionals[expected]}`)
    const m = await memberNamed(db, who(ctx, byFlag ? undefined : positionals[0], values))
    const address = required('address', subject(ctx, rest[0], { address: values.address }, '<address>'))
    const removed = await removeSuppression(db, { memberId: m.id, address, by: actor() })
    console.log(JSON.stringify({ member: m.did, address: address.toLowerCase(), removed }))
    return removed ? 0 : 1
  },
})

const reinstate = opsCommand({
  usage: '<did|domain> [--reason TEXT]',
  help:
    'Sets a suspended member active again and tells the labeler (member-status-changed), which re-issues\n' +
    'relay-member. Prints the change as one JSON line; exit 1 when Redis did not take the event.',
  args: [WHO],
  options: {
    reason: {
      type: 'string',
      value: 'TEXT',
      help: 'why, recorded with the change; default "reinstated by an operator"',
    },
    ...OLD_WHO,
  },
  async run(config, db, { values, positionals }, ctx) {
    const m = await memberNamed(db, who(ctx, positionals[0], values))
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
  },
})

/** The feedback and reputation commands, as `fbl-ingest` offers them. */
export const OPS_COMMANDS: CommandTree = {
  aggregate: { add: aggregateAdd },
  suppressions: { list: suppressionsList, remove: suppressionsRemove },
  reinstate,
}
