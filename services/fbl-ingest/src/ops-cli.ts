// Operator commands for feedback and reputation, run through `fbl-ingest` (src/cli.ts):
//   aggregate add --did D --provider gmail --from ISO --to ISO --rate 0.002 [--volume N]
//   suppressions list [--did D]
//   suppressions remove --did D --address A
//   reinstate --did D [--reason TEXT]
import { parseArgs } from 'node:util'
import { loadConfig } from '@atmos/config'
import { createDb, type Db, members } from '@atmos/db'
import { createRedis, memberStatusChanged, TypedQueue } from '@atmos/queues'
import {
  AggregateInputError,
  computeReputation,
  listSuppressions,
  recordAggregateFeedback,
  removeSuppression,
  setMemberStatus,
} from '@atmos/reputation'
import { eq } from 'drizzle-orm'
import { fblIngestConfigSchema } from './config.ts'

export const OPS_USAGE = `usage:
  fbl-ingest aggregate add --did DID --provider gmail --from ISO --to ISO --rate 0.002 [--volume N]
  fbl-ingest suppressions list [--did DID]
  fbl-ingest suppressions remove --did DID --address ADDRESS
  fbl-ingest reinstate --did DID [--reason TEXT]`

class UsageError extends Error {}

function actor(): string {
  return `operator:${process.env.USER ?? process.env.LOGNAME ?? 'cli'}`
}

async function memberByDid(db: Db, did: string | undefined): Promise<{ id: number; did: string; domain: string }> {
  if (!did) throw new UsageError('--did is required')
  const [m] = await db
    .select({ id: members.id, did: members.did, domain: members.domain })
    .from(members)
    .where(eq(members.did, did))
  if (!m) throw new UsageError(`no member ${did}`)
  return m
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

export async function main(argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      did: { type: 'string' },
      provider: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      rate: { type: 'string' },
      volume: { type: 'string' },
      address: { type: 'string' },
      reason: { type: 'string' },
    },
  })
  const command = positionals.join(' ')
  if (!['aggregate add', 'suppressions list', 'suppressions remove', 'reinstate'].includes(command)) {
    process.stderr.write(`${OPS_USAGE}\n`)
    return 64
  }
  const config = loadConfig(fblIngestConfigSchema, { env })
  const db = createDb({ url: config.database.url, poolMax: 2, connectTimeout: config.database.connectTimeout })
  try {
    if (command === 'aggregate add') {
      const m = await memberByDid(db, values.did)
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
      console.log(JSON.stringify({ recorded: id, member: m.did, level: rep.level, reasons: rep.reasons }))
      return 0
    }
    if (command === 'suppressions list') {
      const m = values.did ? await memberByDid(db, values.did) : undefined
      for (const s of await listSuppressions(db, m ? { memberId: m.id } : {})) {
        console.log(
          JSON.stringify({
            member: s.memberId,
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
      const m = await memberByDid(db, values.did)
      const address = required('address', values.address)
      const removed = await removeSuppression(db, { memberId: m.id, address, by: actor() })
      console.log(JSON.stringify({ member: m.did, address: address.toLowerCase(), removed }))
      return removed ? 0 : 1
    }
    // reinstate
    const m = await memberByDid(db, values.did)
    const redis = createRedis(config.redis.url)
    redis.on('error', () => {})
    const queue = new TypedQueue(memberStatusChanged, redis, config.redis.prefix)
    try {
      const r = await setMemberStatus(db, queue, m.did, 'active', values.reason ?? 'reinstated by an operator', actor())
      console.log(
        JSON.stringify({
          member: m.did,
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
