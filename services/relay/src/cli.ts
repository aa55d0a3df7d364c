// Operator commands (`pnpm --filter @atmos/relay relay <command>`, or `node src/cli.ts`).
// Every command answers --help; `relay --help` lists them all. A usage error exits 64.
import { randomBytes } from 'node:crypto'
import {
  type Command,
  type CommandContext,
  type CommandTree,
  command,
  loadConfig,
  type OptionSpec,
  type Parsed,
  runCli,
  subject,
  UsageError,
} from '@atmos/config'
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

/** A TXT record as a zone-file line, cut into the 255-octet strings DNS requires. */
function zoneLine(name: string, txt: string): string {
  const chunks = txt.match(/.{1,255}/g) ?? []
  return `${name}. IN TXT ${chunks.map((c) => `"${c}"`).join(' ')}`
}

async function keysInit(config: RelayConfig, db: Db, selector: string) {
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

async function keysResealPool(config: RelayConfig, db: Db) {
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

/** A relay command: it runs with the configuration and a database, both set up only once help and usage are settled. */
function relayCommand<O extends Record<string, OptionSpec> = Record<never, OptionSpec>>(
  c: Omit<Command<O>, 'run'> & {
    run: (config: RelayConfig, db: Db, parsed: Parsed<O>, ctx: CommandContext) => Promise<number>
  },
): Command<O> {
  return command({
    ...c,
    async run(parsed, ctx) {
      const config = loadConfig(relayConfigSchema)
      const db = createDb({ url: config.database.url, poolMax: 2 })
      try {
        return await c.run(config, db, parsed, ctx)
      } finally {
        await db.$client.end({ timeout: 5 }).catch(() => {})
      }
    },
  })
}

const DID_ARG = { name: '<did>', help: "the member's DID (did:plc:... or did:web:...)" }
const WHO_ARG = { name: '<did|domain>', help: 'a DID (the member, all its domains) or a domain (that domain only)' }
const SELECTOR_OPT = {
  type: 'string',
  value: 'STEM',
  help: 'DKIM selector stem: keys <STEM>r (RSA-2048) and <STEM>e (Ed25519); default atmos1',
} as const
const REASON_OPT = { type: 'string', value: 'REASON', help: 'why, recorded with the change (required)' } as const

const membersAdd = relayCommand({
  usage: '<did> <domain> [--handle H] [--selector STEM]',
  help:
    'Enrols a member (active at once) with its first sending domain, as `domains add` adds one:\n' +
    'DKIM keys <STEM>r (RSA-2048) and <STEM>e (Ed25519), sealed; a credential scoped to the domain.\n' +
    'Prints the password once, the DKIM records and the attestation record to write.\n' +
    'The older form `--did DID --domain DOMAIN` still works and says it is deprecated.',
  args: [DID_ARG, { name: '<domain>', help: 'its first sending domain' }],
  options: {
    handle: { type: 'string', value: 'H', help: "the member's handle, shown in listings" },
    selector: SELECTOR_OPT,
    did: { type: 'string', value: 'DID', help: 'deprecated: give <did> as an argument' },
    domain: { type: 'string', value: 'DOMAIN', help: 'deprecated: give <domain> as an argument' },
  },
  async run(config, db, { values, positionals }, ctx) {
    const did = subject(ctx, positionals[0], { did: values.did }, '<did>')
    const domain = subject(ctx, positionals[values.did === undefined ? 1 : 0], { domain: values.domain }, '<domain>')
    const expected = 2 - Number(values.did !== undefined) - Number(values.domain !== undefined)
    if (positionals.length > expected) throw new UsageError(`unexpected argument ${positionals[expected]}`)
    if (!did || !domain) throw new UsageError('a DID and a domain are required')
    const m = await addMember(db.$client, loadKeyring(config.relay.kekFile), {
      did,
      domain,
      handle: values.handle,
      selector: values.selector,
      maxDomains: config.relay.pool.maxDomainsPerMember,
      actor: operatorActor(),
    })
    console.log(`member ${m.id} added: ${m.did} (active)`)
    await announceAdded(config, db, m)
    return 0
  },
})

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

const membersList = relayCommand({
  usage: '',
  help: 'Every member with its status and the domains it holds now; "no members" when there are none.',
  async run(_config, db) {
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
  },
})

const statusCommand = (sub: 'suspend' | 'reinstate') =>
  relayCommand({
    usage: '<did|domain> --reason REASON',
    help:
      `${sub === 'suspend' ? 'Suspends' : 'Reinstates'} a member (given its DID: all its domains) or one domain ` +
      '(given a domain: that domain only),\nrecords the change and tells the labeler (member-status-changed). ' +
      'Exit 75 when Redis did not take the event.',
    args: [WHO_ARG],
    options: {
      reason: REASON_OPT,
      did: { type: 'string', value: 'DID', help: 'deprecated: give <did> as an argument' },
    },
    async run(config, db, { values, positionals }, ctx) {
      const who = subject(ctx, positionals[0], { did: values.did }, '<did|domain>')
      if (!who) throw new UsageError('a DID or domain is required')
      if (!values.reason) throw new UsageError('--reason is required')
      return changeStatus(config, db, who, sub === 'suspend' ? 'suspended' : 'active', values.reason)
    },
  })

const membersRotate = relayCommand({
  usage: '<did|domain>',
  help:
    'New SMTP passwords, each printed once: for a domain, its credential; for a DID, each live\n' +
    'credential of the member. The old ones stop working at once.',
  args: [{ name: '<did|domain>', help: 'a DID (every live credential of the member) or a domain (its credential)' }],
  min: 1,
  async run(_config, db, { positionals }) {
    const rotated = await rotatePassword(db.$client, positionals[0]!)
    for (const { username, password } of rotated) {
      console.log(`SMTP username: ${username}`)
      console.log(`SMTP password: ${password}`)
    }
    console.log(`(the old password${rotated.length === 1 ? '' : 's'} no longer work; shown only now)`)
    return 0
  },
})

const domainsAdd = relayCommand({
  usage: '<did> <domain> [--selector STEM]',
  help:
    'Adds a sending domain to a member (at most pool.maxDomainsPerMember): active, warming from now,\n' +
    'DKIM keys <STEM>r (RSA-2048) and <STEM>e (Ed25519), a credential scoped to it (username = the\n' +
    "domain). Refuses a domain another member holds or another DID's attestation holds.\n" +
    'Prints the password once, the DKIM records and the attestation record to write.',
  args: [DID_ARG, { name: '<domain>', help: 'the domain to add' }],
  min: 2,
  options: { selector: SELECTOR_OPT },
  async run(config, db, { values, positionals }) {
    const [did, domain] = positionals as [string, string]
    const added = await addDomain(db.$client, loadKeyring(config.relay.kekFile), {
      did,
      domain,
      selector: values.selector,
      maxDomains: config.relay.pool.maxDomainsPerMember,
      actor: operatorActor(),
    })
    await announceAdded(config, db, added)
    return 0
  },
})

const domainsList = relayCommand({
  usage: '[<did>]',
  help:
    "Domains held now (one member's with a DID): member, status, warming day and cap, selectors, credential;\n" +
    '"no domains" when there are none.',
  args: [{ name: '<did>', help: "only this member's domains" }],
  async run(config, db, { positionals }) {
    const rows = await listDomains(db.$client, positionals[0])
    if (!rows.length) console.log(positionals[0] ? `${positionals[0]} holds no domains` : 'no domains')
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
  },
})

const domainsRemove = relayCommand({
  usage: '<domain> --reason REASON',
  help:
    'Gives a domain up: the row stays (removed, with the reason), its scoped credentials are revoked\n' +
    'and its DKIM keys retired; the labeler is told. Exit 75 when Redis did not take the event.',
  args: [{ name: '<domain>', help: 'the domain to give up' }],
  min: 1,
  options: { reason: REASON_OPT },
  async run(config, db, { values, positionals }) {
    if (!values.reason) throw new UsageError('--reason is required')
    const reason = values.reason
    checkDomain(positionals[0]!)
    const removed = await removeDomain(db.$client, positionals[0]!, reason, operatorActor())
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
  },
})

const keysInitCommand = relayCommand({
  usage: '[--selector S]',
  help:
    "Creates what the relay needs once: the relay's and the pool's key-encryption key files and the\n" +
    "pool's token secret (mode 0600, never overwritten) and the pool DKIM key, sealed under the pool's\n" +
    "KEK; prints its DNS record. Re-seals a pool key still under the relay's KEK (as reseal-pool).",
  options: { selector: { type: 'string', value: 'S', help: "the pool DKIM key's selector; default pool1" } },
  async run(config, db, { values }) {
    return keysInit(config, db, values.selector ?? 'pool1')
  },
})

const keysResealCommand = relayCommand({
  usage: '',
  help:
    "Moves pool DKIM keys sealed under the relay's KEK (before the pool had its own) under the pool's,\n" +
    "so that fbl-ingest and delivery, which hold only the pool's KEK, can sign.",
  async run(config, db) {
    return keysResealPool(config, db)
  },
})

/** Commands by group and name. */
export const COMMANDS: CommandTree = {
  keys: { init: keysInitCommand, 'reseal-pool': keysResealCommand },
  members: {
    add: membersAdd,
    list: membersList,
    suspend: statusCommand('suspend'),
    reinstate: statusCommand('reinstate'),
    'rotate-password': membersRotate,
  },
  domains: { add: domainsAdd, list: domainsList, remove: domainsRemove },
}

/**
 * Records the change and tells the labeler (member-status-changed) in one step of
 * @atmos/reputation, the same as fbl-ingest's suspensions: a DID changes the member, a
 * domain that domain only. If Redis is unreachable the change stands and its event waits in
 * the outbox: fbl-ingest's reconciler sends it, or the operator runs the command again
 * (which re-sends it at once).
 */
async function changeStatus(
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

process.exit(await runCli('relay', COMMANDS, process.argv.slice(2)))
