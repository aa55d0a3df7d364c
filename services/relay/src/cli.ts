// Operator commands (`pnpm --filter @atmos/relay relay <command>`, or `node src/cli.ts`):
//
//   keys init [--selector S]     create what the relay needs once: the relay's and the pool's
//                                key-encryption key files and the pool's token secret (mode
//                                0600, never overwritten) and the pool DKIM key, sealed under
//                                the pool's KEK; prints its DNS record. Re-seals a pool key
//                                still under the relay's KEK (as reseal-pool).
//   keys reseal-pool             move pool DKIM keys sealed under the relay's KEK (before the
//                                pool had its own) under the pool's, so that fbl-ingest and
//                                delivery, which hold only the pool's KEK, can sign
//   members add --did D --domain X [--handle H] [--selector S]
//                                enrol a member: DKIM key (sealed), SMTP credentials; prints
//                                the DKIM record to publish and the password, once
//   members list
//   members suspend <did|domain> --reason R
//   members reinstate <did|domain> --reason R
//                                change status with a history row, and tell the labeler
//                                (member-status-changed) to negate or re-issue relay-member
//   members rotate-password <did|domain>
//                                a new password, printed once; the old one stops working
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { loadConfig } from '@atmos/config'
import { createDb, type Db } from '@atmos/db'
import { activePoolKey, createDkimKey, resealPoolKeys } from '@atmos/dkim'
import { createRedis, memberStatusChanged, TypedQueue } from '@atmos/queues'
import { notifyStatusChange, setMemberStatus } from '@atmos/reputation'
import { createKeyringFile, createSecretFile, dkimTxtRecord, loadKeyring } from '@atmos/secrets'
import { type RelayConfig, relayConfigSchema } from './config.ts'
import { addMember, listMembers, memberDid, operatorActor, rotatePassword } from './members/store.ts'

const EX_USAGE = 64
const EX_TEMPFAIL = 75

class UsageError extends Error {}

/** A TXT record as a zone-file line, cut into the 255-octet strings DNS requires. */
function zoneLine(name: string, txt: string): string {
  const chunks = txt.match(/.{1,255}/g) ?? []
  return `${name}. IN TXT ${chunks.map((c) => `"${c}"`).join(' ')}`
}

async function keysInit(config: RelayConfig, db: Db, args: string[]) {
  const { values } = parseArgs({ args, options: { selector: { type: 'string', default: 'pool1' } } })
  const { kekFile, pool } = config.relay
  // Members' keys under the relay's KEK, the pool's under its own: processes that sign only
  // as the pool (fbl-ingest, delivery) are given the pool's alone.
  for (const file of [kekFile, pool.kekFile]) {
    console.log(createKeyringFile(file) ? `created ${file} (mode 0600)` : `${file} already exists`)
  }
  const token = createSecretFile(pool.tokenSecretFile, randomBytes(32).toString('hex'))
  console.log(token ? `created ${pool.tokenSecretFile} (mode 0600)` : `${pool.tokenSecretFile} already exists`)
  await resealPool(config, db)
  const existing = await activePoolKey(db.$client, pool.domain)
  if (existing) {
    console.log(`pool DKIM key ${existing.selector}._domainkey.${pool.domain} already exists; its record:`)
    console.log(zoneLine(`${existing.selector}._domainkey.${pool.domain}`, dkimTxtRecord(existing.publicKey)))
    return 0
  }
  const key = await createDkimKey(db.$client, loadKeyring(pool.kekFile), {
    memberId: null,
    domain: pool.domain,
    selector: values.selector!,
  })
  console.log(`created pool DKIM key ${key.txtName} (sealed under ${pool.kekFile}); publish:`)
  console.log(zoneLine(key.txtName, key.txt))
  return 0
}

async function resealPool(config: RelayConfig, db: Db): Promise<number> {
  const { kekFile, pool } = config.relay
  const moved = await resealPoolKeys(db.$client, { members: loadKeyring(kekFile), pool: loadKeyring(pool.kekFile) })
  console.log(
    moved
      ? `re-sealed ${moved} pool DKIM key${moved === 1 ? '' : 's'} under ${pool.kekFile}; restart fbl-ingest and delivery`
      : `every pool DKIM key is sealed under ${pool.kekFile}`,
  )
  return 0
}

async function keysResealPool(config: RelayConfig, db: Db) {
  const file = config.relay.pool.kekFile
  console.log(createKeyringFile(file) ? `created ${file} (mode 0600)` : `${file} already exists`)
  return resealPool(config, db)
}

async function membersCommand(config: RelayConfig, db: Db, args: string[]) {
  const [sub, ...rest] = args
  if (sub === 'add') {
    const { values } = parseArgs({
      args: rest,
      options: {
        did: { type: 'string' },
        domain: { type: 'string' },
        handle: { type: 'string' },
        selector: { type: 'string' },
      },
    })
    if (!values.did || !values.domain)
      throw new UsageError('usage: relay members add --did DID --domain DOMAIN [--handle H]')
    const keyring = loadKeyring(config.relay.kekFile)
    const m = await addMember(db.$client, keyring, {
      did: values.did,
      domain: values.domain,
      handle: values.handle,
      selector: values.selector,
    })
    console.log(`member ${m.id} added: ${m.did} sending as ${m.domain} (active)`)
    console.log(`SMTP username: ${m.username}`)
    console.log(`SMTP password: ${m.password}`)
    console.log('(the password is shown only now; only its hash is stored)')
    console.log(`publish this DKIM record, and list selector ${m.dkim.selector} in the attestation:`)
    console.log(zoneLine(m.dkim.txtName, m.dkim.txt))
    return 0
  }
  if (sub === 'list') {
    const rows = await listMembers(db.$client)
    if (!rows.length) console.log('no members')
    for (const r of rows) {
      const since = r.activeSince ?? '-'
      console.log(
        `${String(r.id).padStart(4)}  ${r.status.padEnd(9)} ${r.domain.padEnd(30)} ${r.did}  active since ${since}`,
      )
    }
    return 0
  }
  if (sub === 'suspend' || sub === 'reinstate') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { reason: { type: 'string' } },
    })
    const who = positionals[0]
    if (!who || !values.reason) throw new UsageError(`usage: relay members ${sub} <did|domain> --reason REASON`)
    const did = await memberDid(db.$client, who)
    return changeStatus(config, db, did, sub === 'suspend' ? 'suspended' : 'active', values.reason)
  }
  if (sub === 'rotate-password') {
    const who = rest[0]
    if (!who) throw new UsageError('usage: relay members rotate-password <did|domain>')
    const { username, password } = await rotatePassword(db.$client, who)
    console.log(`SMTP username: ${username}`)
    console.log(`SMTP password: ${password}`)
    console.log('(the old password no longer works; this one is shown only now)')
    return 0
  }
  throw new UsageError('usage: relay members add|list|suspend|reinstate|rotate-password …')
}

/**
 * Records the change and tells the labeler (member-status-changed) in one step of
 * @atmos/reputation, the same as fbl-ingest's suspensions. If Redis is unreachable the
 * change stands and its event waits in the outbox: fbl-ingest's reconciler sends it, or
 * the operator runs the command again (which re-sends it at once).
 */
async function changeStatus(
  config: RelayConfig,
  db: Db,
  did: string,
  to: 'active' | 'suspended',
  reason: string,
): Promise<number> {
  const redis = createRedis(config.redis.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false })
  redis.on('error', () => {})
  const queue = new TypedQueue(memberStatusChanged, redis, config.redis.prefix)
  try {
    await redis.ping().catch(() => new Promise((r) => setTimeout(r, 1000)))
    const change = await setMemberStatus(db, queue, did, to, reason, operatorActor())
    if (change.changed) console.log(`${did}: ${change.from} → ${change.to} (change ${change.changeId})`)
    else {
      if (!change.changeId) throw new Error(`${did} has no status history to notify the labeler of`)
      console.log(`${did} is already ${to}; notifying the labeler again`)
    }
    const sent =
      change.enqueued ||
      (!change.changed &&
        (await notifyStatusChange(db, queue, { did, status: to, reason, changeId: change.changeId }).then(
          () => true,
          () => false,
        )))
    if (sent) {
      console.log(`labeler notified (member-status-changed, change ${change.changeId})`)
      return 0
    }
    console.error(
      'status recorded, but Redis did not take the event: fbl-ingest will re-send it, or run the command again',
    )
    return EX_TEMPFAIL
  } finally {
    await Promise.race([queue.close().catch(() => {}), new Promise((r) => setTimeout(r, 1000))])
    redis.disconnect()
  }
}

const [command, ...rest] = process.argv.slice(2)
let db: Db | undefined
try {
  const config = loadConfig(relayConfigSchema)
  db = createDb({ url: config.database.url, poolMax: 2 })
  const code =
    command === 'keys' && rest[0] === 'init'
      ? await keysInit(config, db, rest.slice(1))
      : command === 'keys' && rest[0] === 'reseal-pool'
        ? await keysResealPool(config, db)
        : command === 'members'
          ? await membersCommand(config, db, rest)
          : (() => {
              throw new UsageError(
                'usage: relay keys init|reseal-pool | members add|list|suspend|reinstate|rotate-password …',
              )
            })()
  await db.$client.end({ timeout: 5 })
  process.exit(code)
} catch (err) {
  await db?.$client.end({ timeout: 5 }).catch(() => {})
  console.error(`relay ${command ?? ''}: ${(err as Error).message}`)
  process.exit(err instanceof UsageError ? EX_USAGE : 1)
}
