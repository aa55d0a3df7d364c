import { randomBytes, randomUUID } from 'node:crypto'
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { loadConfig } from '@atmos/config'
import { createDb, type Db, domains, inboundMessages, members, messageRecipients, messages } from '@atmos/db'
import { createDkimKey } from '@atmos/dkim'
import { messageToken, type VerpConfig, verpAddress } from '@atmos/mail-feedback'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, loadKeyring } from '@atmos/secrets'
import {
  createTestDatabase,
  deletePrefix,
  TEST_REDIS_URL,
  type TestDatabase,
  TestDnsServer,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { eq } from 'drizzle-orm'
import { fblIngestConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import type { PoolIdentity } from '../src/pool.ts'
import { FblIngestService } from '../src/service.ts'

export const POOL_DOMAIN = 'pool.example'
export const BOUNCE_DOMAIN = 'bounces.pool.example'
export const OPERATOR_INBOX = 'ops@operator.example'

export function tokenSecretFile(secret = randomBytes(32).toString('hex')): { path: string; secret: string } {
  const dir = mkdtempSync(join(tmpdir(), 'atmos-fbl-'))
  const path = join(dir, 'token.secret')
  writeFileSync(path, `${secret}\n`, { mode: 0o600 })
  chmodSync(path, 0o600)
  return { path, secret }
}

export type Env = Record<string, string>

export function serviceEnv(opts: {
  databaseUrl: string
  prefix: string
  secretFile: string
  /** The pool's key-encryption keys, which seal the pool's DKIM key that signs forwards (never the relay's). */
  poolKekFile: string
  /** The loopback DNS the listener checks DKIM, SPF and DMARC with: never the internet. */
  dnsServer: string
  extra?: Env
}): Env {
  return {
    ATMOS_DATABASE_URL: opts.databaseUrl,
    ATMOS_REDIS_URL: TEST_REDIS_URL,
    ATMOS_REDIS_PREFIX: opts.prefix,
    ATMOS_HTTP_PORT: '0',
    ATMOS_LOG_LEVEL: 'silent',
    ATMOS_FBL_INGEST_POOL_DOMAIN: POOL_DOMAIN,
    ATMOS_FBL_INGEST_POOL_BOUNCE_DOMAIN: BOUNCE_DOMAIN,
    ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE: opts.secretFile,
    ATMOS_FBL_INGEST_SMTP_HOST: '127.0.0.1',
    ATMOS_FBL_INGEST_SMTP_PORT: '0',
    ATMOS_FBL_INGEST_OPERATOR_INBOX: OPERATOR_INBOX,
    ATMOS_FBL_INGEST_POOL_KEK_FILE: opts.poolKekFile,
    ATMOS_FBL_INGEST_DNS_SERVERS: opts.dnsServer,
    ...opts.extra,
  }
}

/** One fbl-ingest in this process; several may share a database (an smtp-only and a worker-only one). */
export async function startService(env: Env): Promise<FblIngestService> {
  const config = loadConfig(fblIngestConfigSchema, { env })
  const service = new FblIngestService(createContext(config, { logger: createLogger('fbl-ingest', 'silent') }))
  await service.start()
  await service.whenStarted()
  return service
}

export type Harness = {
  database: TestDatabase
  db: Db
  prefix: string
  secret: string
  verp: VerpConfig
  env: Env
  redis: ReturnType<typeof testRedis>
  /** The pool's DKIM key (d=POOL_DOMAIN) that signs forwards, as its TXT record would publish it. */
  poolKey: { selector: string; txt: string }
  /** The pool's KEK file, the only one fbl-ingest is given. */
  poolKekFile: string
  /** The relay's KEK file, which seals members' keys: made here only to show fbl-ingest does without it. */
  relayKekFile: string
  /** Answers the receipt checks; empty unless a test adds records. */
  dns: TestDnsServer
  close: () => Promise<void>
}

export async function harness(label: string): Promise<Harness> {
  const database = await createTestDatabase()
  const db = createDb({ url: database.url, poolMax: 4 })
  const prefix = testRedisPrefix(label)
  const { path, secret } = tokenSecretFile()
  // What `relay keys init` leaves behind: both KEK files and the pool's DKIM key sealed under its own.
  const poolKekFile = join(dirname(path), 'pool-kek')
  const relayKekFile = join(dirname(path), 'relay-kek')
  createKeyringFile(poolKekFile)
  createKeyringFile(relayKekFile)
  const poolKey = await createDkimKey(db.$client, loadKeyring(poolKekFile), {
    memberId: null,
    domain: POOL_DOMAIN,
    selector: 'atmos1',
  })
  const redis = testRedis()
  const dns = new TestDnsServer()
  await dns.start()
  return {
    database,
    db,
    prefix,
    secret,
    verp: { secret, bounceDomain: BOUNCE_DOMAIN, prefix: 'b' },
    env: serviceEnv({ databaseUrl: database.url, prefix, secretFile: path, poolKekFile, dnsServer: dns.address }),
    redis,
    poolKey: { selector: poolKey.selector, txt: poolKey.txt },
    poolKekFile,
    relayKekFile,
    dns,
    close: async () => {
      await dns.close()
      await deletePrefix(redis, prefix)
      redis.disconnect()
      await db.$client.end({ timeout: 5 })
      await database.drop()
    },
  }
}

/** A member and the domain it sends as (its first; addDomain gives it more). */
export type TestMember = { id: number; did: string; domain: string; domainId: number }

export async function addMember(db: Db): Promise<TestMember> {
  const tag = randomBytes(5).toString('hex')
  // A did:plc has 24 base32 characters; the classifier only reads DIDs of that shape.
  const plc = Array.from(randomBytes(24), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b % 32]).join('')
  const [m] = await db
    .insert(members)
    .values({ did: `did:plc:${plc}`, status: 'active', activatedAt: new Date() })
    .returning({ id: members.id, did: members.did })
  return addDomain(db, { id: m!.id, did: m!.did }, `m${tag}.example`)
}

/** Another domain the member holds: the returned member sends as it. */
export async function addDomain(db: Db, member: Pick<TestMember, 'id' | 'did'>, domain: string): Promise<TestMember> {
  const [d] = await db
    .insert(domains)
    .values({ memberId: member.id, domain, status: 'active', activatedAt: new Date() })
    .returning({ id: domains.id, domain: domains.domain })
  return { id: member.id, did: member.did, domain: d!.domain, domainId: d!.id }
}

export type Spooled = { messageId: string; recipient: string; returnPath: string; ref: string }

/** A message as the relay spools it: one row per recipient with its VERP return path and reference token. */
export async function spool(
  h: Pick<Harness, 'db' | 'verp'>,
  member: TestMember,
  recipient: string,
  state: 'delivered' | 'queued' = 'delivered',
): Promise<Spooled> {
  const messageId = randomUUID()
  const returnPath = verpAddress(h.verp, messageId)
  await h.db.insert(messages).values({
    id: messageId,
    memberId: member.id,
    domainId: member.domainId,
    envelopeFrom: `noreply@${member.domain}`,
    returnPath,
    size: 1,
    body: Buffer.from('x'),
    expiresAt: new Date(Date.now() + 86_400_000),
    state: 'done',
  })
  await h.db
    .insert(messageRecipients)
    .values({ messageId, address: recipient, domain: recipient.split('@')[1]!, state })
  return { messageId, recipient, returnPath, ref: messageToken(h.verp, messageId) }
}

/** Inserts `n` delivered messages for the member (the volume reputation counts against). */
export async function deliveredVolume(h: Pick<Harness, 'db' | 'verp'>, member: TestMember, n: number): Promise<void> {
  const rows = Array.from({ length: n }, () => randomUUID())
  await h.db.insert(messages).values(
    rows.map((id) => ({
      id,
      memberId: member.id,
      domainId: member.domainId,
      envelopeFrom: `noreply@${member.domain}`,
      returnPath: 'x',
      size: 1,
      body: Buffer.from('x'),
      expiresAt: new Date(Date.now() + 86_400_000),
      state: 'done' as const,
    })),
  )
  await h.db.insert(messageRecipients).values(
    rows.map((id, i) => ({
      messageId: id,
      address: `v${i}@volume.example`,
      domain: 'volume.example',
      state: 'delivered' as const,
    })),
  )
}

/**
 * A raw SMTP conversation: each command's full reply (last line), in order. Stops at
 * the first reply that closes the connection.
 */
export async function smtpDialog(port: number, commands: string[]): Promise<string[]> {
  const socket = connect(port, '127.0.0.1')
  socket.setEncoding('utf8')
  let buffer = ''
  const waiters: ((line: string) => void)[] = []
  const replies: string[] = []
  socket.on('data', (d: string) => {
    buffer += d
    for (;;) {
      const m = /^(\d{3})([ -])(.*)\r?\n/m.exec(buffer)
      if (!m) break
      buffer = buffer.slice(m.index + m[0].length)
      if (m[2] === ' ') replies.push(`${m[1]} ${m[3]}`)
      while (replies.length && waiters.length) waiters.shift()!(replies.shift()!)
    }
  })
  const next = () =>
    new Promise<string>((resolve, reject) => {
      if (replies.length) return resolve(replies.shift()!)
      const timer = setTimeout(() => reject(new Error('no SMTP reply')), 10_000)
      waiters.push((l) => {
        clearTimeout(timer)
        resolve(l)
      })
    })
  const out: string[] = []
  try {
    await next() // greeting
    for (const c of commands) {
      socket.write(`${c}\r\n`)
      out.push(await next())
    }
  } finally {
    socket.destroy()
  }
  return out
}

/** Sends a message (CRLF text) with a raw dialog; returns the reply to the end of DATA. */
export async function sendRaw(port: number, from: string, to: string[], message: string): Promise<string> {
  const body = message.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..')
  const replies = await smtpDialog(port, [
    'EHLO mx.remote.example',
    `MAIL FROM:<${from}>`,
    ...to.map((t) => `RCPT TO:<${t}>`),
    'DATA',
    `${body}\r\n.`,
  ])
  return replies[replies.length - 1]!
}

/** Sends a message and waits until the worker has finished the row it was stored as. */
export async function deliverProcessed(
  h: Harness,
  port: number,
  to: string,
  message: string,
  from = '',
): Promise<typeof inboundMessages.$inferSelect> {
  const reply = await sendRaw(port, from, [to], message)
  if (!reply.startsWith('250 ')) throw new Error(`not stored: ${reply}`)
  const id = Number(/stored as (\d+)/.exec(reply)?.[1])
  return waitFor(`inbound ${id} processed`, async () => {
    const [row] = await h.db.select().from(inboundMessages).where(eq(inboundMessages.id, id))
    return row && row.state !== 'received' ? row : undefined
  })
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The pool identity the service derives from the harness' config. */
export function poolIdentity(h: Harness): PoolIdentity {
  return { domain: POOL_DOMAIN, verp: h.verp, feedbackSenderId: 'atmospool' }
}
