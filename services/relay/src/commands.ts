// What the relay's operator commands do once their arguments are settled. src/cli.ts declares
// the commands and imports this module only when one runs, so that help and usage errors load
// the argument parser alone (a whole relay's modules take seconds to load on a busy machine).
import { randomBytes } from 'node:crypto'
import { loadConfig } from '@atmos/config'
import { createDb, type Db } from '@atmos/db'
import { activePoolKey, createDkimKey, resealPoolKeys } from '@atmos/dkim'
import {
  type AddedDomain,
  ATTESTATION_COLLECTION,
  addDomain,
  addMember,
  checkDomain,
  dailyCapFor,
  listDomains,
  listMembers,
  memberDid,
  operatorActor,
  removeDomain,
  rotatePassword,
} from '@atmos/enrolment'
import { createRedis, memberStatusChanged, TypedQueue } from '@atmos/queues'
import { notifyStatusChange, type StatusQueue, setDomainStatus, setMemberStatus } from '@atmos/reputation'
import { createKeyringFile, createSecretFile, dkimTxtRecord, loadKeyring } from '@atmos/secrets'
import { type RelayConfig, relayConfigSchema } from './config.ts'

const EX_TEMPFAIL = 75

/** Runs a command with the configuration and a database, closed after it. */
async function withRelay(run: (config: RelayConfig, db: Db) => Promise<number>): Promise<number> {
  const config = loadConfig(relayConfigSchema)
  const db = createDb({ url: config.database.url, poolMax: 2 })
  try {
    return await run(config, db)
  } finally {
    await db.$client.end({ timeout: 5 }).catch(() => {})
  }
}

/** A TXT record as a zone-file line, cut into the 255-octet strings DNS requires. */
function zoneLine(name: string, txt: string): string {
  const chunks = txt.match(/.{1,255}/g) ?? []
  return `${name}. IN TXT ${chunks.map((c) => `"${c}"`).join(' ')}`
}

async function initKeys(config: RelayConfig, db: Db, selector: string) {
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
    selector,
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

async function resealPoolUnderItsKek(config: RelayConfig, db: Db) {
  const file = config.relay.pool.kekFile
  console.log(createKeyringFile(file) ? `created ${file} (mode 0600)` : `${file} already exists`)
  return resealPool(config, db)
}

/** The records a new domain needs published: both DKIM TXT records and the attestation. */
function printDomainRecords(added: AddedDomain) {
  console.log(`SMTP username: ${added.username}`)
  console.log(`SMTP password: ${added.password}`)
  console.log('(the password is shown only now; only its hash is stored)')
  console.log('publish these DKIM records (RSA and Ed25519; messages are signed with both):')
  for (const key of added.keys) console.log(zoneLine(key.txtName, key.txt))
  console.log(
    `write this record to ${added.did}'s repository, collection ${ATTESTATION_COLLECTION}, record key ${added.domain}:`,
  )
  console.log(JSON.stringify(added.attestation))
  if (added.copiedSuppressions) {
    console.log(
      `carried over ${added.copiedSuppressions} suppression${added.copiedSuppressions === 1 ? '' : 's'} from earlier holders of ${added.domain}`,
    )
  }
}

/** Warming as `domains list` shows it: day N and today's cap, or warm. */
function warmingOf(config: RelayConfig, activatedAt: number | null): string {
  const { warmingTiers, dailyCap } = config.relay.submission
  const now = new Date()
  const { cap, ageDays, warming } = dailyCapFor(activatedAt, now, warmingTiers, dailyCap)
  return warming ? `day ${ageDays}, cap ${cap}/day` : `warm, cap ${cap}/day`
}

/**
 * Records the change and tells the labeler (member-status-changed) in one step of
 * @atmos/reputation, the same as fbl-ingest's suspensions: a DID changes the member, a
 * domain that domain only. If Redis is unreachable the change stands and its event waits in
 * the outbox: fbl-ingest's reconciler sends it, or the operator runs the command again
 * (which re-sends it at once).
 */
async function recordStatus(
  config: RelayConfig,
  db: Db,
  who: string,
  to: 'active' | 'suspended',
  reason: string,
): Promise<number> {
  const byDid = who.startsWith('did:')
  const name = byDid ? await memberDid(db.$client, who) : checkDomain(who)
  return withStatusQueue(config, async (queue) => {
    const change = byDid
      ? await setMemberStatus(db, queue, name, to, reason, operatorActor())
      : await setDomainStatus(db, queue, name, to, reason, operatorActor())
    if (change.changed) console.log(`${name}: ${change.from} → ${change.to} (change ${change.changeId})`)
    else {
      if (!change.changeId) throw new Error(`${name} has no status history to notify the labeler of`)
      console.log(`${name} is already ${to}; notifying the labeler again`)
    }
    const sent =
      change.enqueued ||
      (!change.changed &&
        (await notifyStatusChange(db, queue, { did: change.did, status: to, reason, changeId: change.changeId }).then(
          () => true,
          () => false,
        )))
    return reportNotified(sent, change.changeId)
  })
}

/** A new domain can make the DID a relay member: the labeler looks again (best effort; the outbox keeps it). */
async function notifyAdded(config: RelayConfig, db: Db, added: AddedDomain): Promise<void> {
  const sent = await withStatusQueue(config, (queue) =>
    notifyStatusChange(db, queue, {
      did: added.did,
      status: 'active',
      reason: `domain ${added.domain} added`,
      changeId: added.changeId,
    }).then(
      () => true,
      () => false,
    ),
  )
  if (sent) console.log(`labeler notified (member-status-changed, change ${added.changeId})`)
  else console.error('Redis did not take the event for the labeler: fbl-ingest will re-send it')
}

function reportNotified(sent: boolean, changeId: number): number {
  if (sent) {
    console.log(`labeler notified (member-status-changed, change ${changeId})`)
    return 0
  }
  console.error(
    'status recorded, but Redis did not take the event: fbl-ingest will re-send it, or run the command again',
  )
  return EX_TEMPFAIL
}

async function withStatusQueue<T>(config: RelayConfig, run: (queue: StatusQueue) => Promise<T>): Promise<T> {
  const redis = createRedis(config.redis.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false })
  redis.on('error', () => {})
  const queue = new TypedQueue(memberStatusChanged, redis, config.redis.prefix)
  try {
    await redis.ping().catch(() => new Promise((r) => setTimeout(r, 1000)))
    return await run(queue)
  } finally {
    await Promise.race([queue.close().catch(() => {}), new Promise((r) => setTimeout(r, 1000))])
    redis.disconnect()
  }
}

/** `keys init`: the KEK files, the token secret and the pool DKIM key, each made once. */
export function keysInit(selector: string): Promise<number> {
  return withRelay((config, db) => initKeys(config, db, selector))
}

/** `keys reseal-pool`. */
export function keysResealPool(): Promise<number> {
  return withRelay(resealPoolUnderItsKek)
}

/** `members add`: a member, active at once, with its first domain. */
export function membersAdd(input: { did: string; domain: string; handle?: string; selector?: string }) {
  return withRelay(async (config, db) => {
    const m = await addMember(db.$client, loadKeyring(config.relay.kekFile), {
      ...input,
      maxDomains: config.relay.pool.maxDomainsPerMember,
      actor: operatorActor(),
    })
    console.log(`member ${m.id} added: ${m.did} (active)`)
    await announceAdded(config, db, m)
    return 0
  })
}

/** What `members add` and `domains add` both say of a new domain: its warming, its records, and the labeler told. */
async function announceAdded(
  config: RelayConfig,
  db: Db,
  added: Parameters<typeof printDomainRecords>[0] & Parameters<typeof notifyAdded>[2],
) {
  console.log(`domain ${added.domain} added to ${added.did} (active, ${warmingOf(config, Date.now())})`)
  printDomainRecords(added)
  await notifyAdded(config, db, added)
}

/** `members list`. */
export function membersList(): Promise<number> {
  return withRelay(async (_config, db) => {
    const rows = await listMembers(db.$client)
    if (!rows.length) console.log('no members')
    for (const r of rows) {
      const why = r.status === 'suspended' && r.statusReason ? ` (${r.statusReason})` : ''
      console.log(
        `${String(r.id).padStart(4)}  ${r.status.padEnd(9)} ${r.did}  active since ${r.activeSince ?? '-'}${why}`,
      )
      if (!r.domains.length) console.log('        (no domains)')
      for (const d of r.domains) {
        const dwhy = d.status === 'suspended' && d.statusReason ? ` (${d.statusReason})` : ''
        console.log(`        ${d.domain.padEnd(30)} ${d.status}${dwhy}`)
      }
    }
    return 0
  })
}

/** `members suspend | reinstate`: a DID changes the member, a domain that domain only. */
export function changeStatus(who: string, to: 'active' | 'suspended', reason: string): Promise<number> {
  return withRelay((config, db) => recordStatus(config, db, who, to, reason))
}

/** `members rotate-password`: new passwords, each printed once. */
export function rotatePasswords(who: string): Promise<number> {
  return withRelay(async (_config, db) => {
    const rotated = await rotatePassword(db.$client, who)
    for (const { username, password } of rotated) {
      console.log(`SMTP username: ${username}`)
      console.log(`SMTP password: ${password}`)
    }
    console.log(`(the old password${rotated.length === 1 ? '' : 's'} no longer work; shown only now)`)
    return 0
  })
}

/** `domains add`. */
export function domainsAdd(input: { did: string; domain: string; selector?: string }): Promise<number> {
  return withRelay(async (config, db) => {
    const added = await addDomain(db.$client, loadKeyring(config.relay.kekFile), {
      ...input,
      maxDomains: config.relay.pool.maxDomainsPerMember,
      actor: operatorActor(),
    })
    await announceAdded(config, db, added)
    return 0
  })
}

/** `domains list`: every domain held now, or one member's. */
export function domainsList(did: string | undefined): Promise<number> {
  return withRelay(async (config, db) => {
    const rows = await listDomains(db.$client, did)
    if (!rows.length) console.log(did ? `${did} holds no domains` : 'no domains')
    for (const r of rows) {
      const status = r.status === 'suspended' && r.statusReason ? `suspended (${r.statusReason})` : r.status
      console.log(
        [
          r.domain.padEnd(30),
          r.did,
          status.padEnd(9),
          warmingOf(config, r.activatedAt).padEnd(22),
          `selectors ${r.selectors.join(',') || '-'}`,
          `username ${r.usernames.join(',') || '-'}`,
        ].join('  '),
      )
    }
    return 0
  })
}

/** `domains remove`: the domain given up, its credentials revoked and keys retired, the labeler told. */
export function domainsRemove(domain: string, reason: string): Promise<number> {
  return withRelay(async (config, db) => {
    checkDomain(domain)
    const removed = await removeDomain(db.$client, domain, reason, operatorActor())
    console.log(
      `${removed.domain} removed from ${removed.did} (change ${removed.changeId}); ` +
        `revoked ${removed.revokedCredentials} credential${removed.revokedCredentials === 1 ? '' : 's'}, ` +
        `retired ${removed.retiredKeys} DKIM key${removed.retiredKeys === 1 ? '' : 's'}`,
    )
    const sent = await withStatusQueue(config, (queue) =>
      notifyStatusChange(db, queue, {
        did: removed.did,
        status: 'suspended',
        reason: `domain removed: ${reason}`,
        changeId: removed.changeId,
      }).then(
        () => true,
        () => false,
      ),
    )
    return reportNotified(sent, removed.changeId)
  })
}
