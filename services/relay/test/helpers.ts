import { randomBytes } from 'node:crypto'
import { Resolver } from 'node:dns/promises'
import { mkdtempSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TLSSocket, connect as tlsConnect } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '@atmos/config'
import { createPool, type Pool } from '@atmos/db'
import { activePoolKey, createDkimKey, type NewDkimKey } from '@atmos/dkim'
import { type BaseContext, closeBaseContext, createBaseContext, createLogger } from '@atmos/runtime'
import { createKeyringFile, createSecretFile, type Keyring, loadKeyring } from '@atmos/secrets'
import {
  type CliResult,
  createTestDatabase,
  deletePrefix,
  runCli as runEntry,
  TEST_REDIS_URL,
  type TestDatabase,
  testCertificate,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { createTransport } from 'nodemailer'
import { type RelayConfig, relayConfigSchema } from '../src/config.ts'
import { type AddedDomain, addDomain } from '../src/domains/store.ts'
import { type AddedMember, addMember } from '../src/members/store.ts'
import { Submission } from '../src/submission/index.ts'

export const POOL_DOMAIN = 'pool.example'
export const BOUNCE_DOMAIN = 'bounces.pool.example'
export const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url))

/** The secret files a relay needs (both KEKs, token secret) in a directory of their own, and a certificate. */
export function relayFiles(): {
  kekFile: string
  poolKekFile: string
  tokenSecretFile: string
  certFile: string
  keyFile: string
} {
  const dir = mkdtempSync(join(tmpdir(), 'atmos-relay-'))
  const kekFile = join(dir, 'kek')
  const poolKekFile = join(dir, 'pool-kek')
  const tokenSecretFile = join(dir, 'token.secret')
  createKeyringFile(kekFile)
  createKeyringFile(poolKekFile)
  createSecretFile(tokenSecretFile, randomBytes(32).toString('hex'))
  return { kekFile, poolKekFile, tokenSecretFile, ...testCertificate() }
}

/** The environment of a relay that only accepts submissions, on a free port, with test files. */
export function submissionEnv(opts: {
  databaseUrl: string
  redisPrefix: string
  files: ReturnType<typeof relayFiles>
  extra?: Record<string, string>
}): Record<string, string> {
  return {
    ATMOS_DATABASE_URL: opts.databaseUrl,
    ATMOS_REDIS_URL: TEST_REDIS_URL,
    ATMOS_REDIS_PREFIX: opts.redisPrefix,
    ATMOS_HTTP_PORT: '0',
    ATMOS_LOG_LEVEL: 'silent',
    ATMOS_RELAY_ROLES: 'submission',
    ATMOS_RELAY_KEK_FILE: opts.files.kekFile,
    ATMOS_RELAY_POOL_KEK_FILE: opts.files.poolKekFile,
    ATMOS_RELAY_POOL_DOMAIN: POOL_DOMAIN,
    ATMOS_RELAY_POOL_BOUNCE_DOMAIN: BOUNCE_DOMAIN,
    ATMOS_RELAY_POOL_TOKEN_SECRET_FILE: opts.files.tokenSecretFile,
    ATMOS_RELAY_SUBMISSION_PORT: '0',
    ATMOS_RELAY_SUBMISSION_TLS_CERT_FILE: opts.files.certFile,
    ATMOS_RELAY_SUBMISSION_TLS_KEY_FILE: opts.files.keyFile,
    ...opts.extra,
  }
}

/** A relay's context in this process, built from `env` as the relay builds it; silent unless asked. */
export function relayContext(env: Record<string, string>): BaseContext<RelayConfig> {
  const config = loadConfig(relayConfigSchema, { env })
  const level = process.env.ATMOS_TEST_LOG_LEVEL ?? process.env.TEST_LOG_LEVEL ?? 'silent'
  return createBaseContext('relay', config, { logger: createLogger('relay', level as 'info') })
}

export type Harness = {
  db: TestDatabase
  sql: Pool
  prefix: string
  files: ReturnType<typeof relayFiles>
  keyring: Keyring
  ctx: BaseContext<RelayConfig>
  submission: Submission
  port: number
  env: Record<string, string>
  close: () => Promise<void>
}

/** A database, a pool DKIM key, and a submission server in this process. */
export async function startSubmission(extra: Record<string, string> = {}): Promise<Harness> {
  const db = await createTestDatabase()
  const sql = createPool({ url: db.url, poolMax: 4 })
  const prefix = testRedisPrefix('relay-sub')
  const files = relayFiles()
  const keyring = loadKeyring(files.kekFile)
  await createDkimKey(sql, loadKeyring(files.poolKekFile), { memberId: null, domain: POOL_DOMAIN, selector: 'pool1' })
  const env = submissionEnv({ databaseUrl: db.url, redisPrefix: prefix, files, extra })
  const ctx = relayContext(env)
  const submission = new Submission(ctx)
  await submission.start()
  return {
    db,
    sql,
    prefix,
    files,
    keyring,
    ctx,
    submission,
    port: submission.addresses.starttls!.port,
    env,
    close: async () => {
      await submission.stop()
      if (ctx.redis.status === 'ready') await closeBaseContext(ctx)
      else {
        // closeBaseContext's QUIT never settles while ioredis is reconnecting (redis-down test).
        ctx.redis.disconnect()
        await ctx.ops.stop()
        await ctx.db.$client.end({ timeout: 5 })
      }
      const redis = testRedis()
      await deletePrefix(redis, prefix)
      redis.disconnect()
      await sql.end({ timeout: 5 })
      await db.drop()
    },
  }
}

let didSeq = 0

type DomainOpts = {
  /** verification_status(did, domain).holds; true unless told. */
  holds?: boolean
  /** Days since this domain's warming began. */
  activatedDaysAgo?: number
}

/**
 * An enrolled member (its first domain: both DKIM keys, a credential scoped to it) that the
 * relay admits, as the contract requires: its attestation for the domain holds
 * (verification_status) and the DID holds a verified-mail-operator label, unless told otherwise.
 */
export async function createMember(
  h: Pick<Harness, 'sql' | 'keyring'>,
  domain: string,
  opts: DomainOpts & { verified?: boolean; labelExp?: string | null; maxDomains?: number } = {},
): Promise<AddedMember> {
  const did = `did:plc:relaytest${(++didSeq).toString().padStart(4, '0')}${randomBytes(4).toString('hex')}`
  const member = await addMember(h.sql, h.keyring, { did, domain, maxDomains: opts.maxDomains ?? 2 })
  await settleDomain(h.sql, member, opts)
  if (opts.activatedDaysAgo !== undefined) {
    await h.sql`update members set activated_at = now() - make_interval(days => ${opts.activatedDaysAgo}) where id = ${member.id}`
  }
  if (opts.verified !== false) await setLabel(h.sql, did, { neg: false, exp: opts.labelExp ?? null })
  return member
}

/** Another domain of the member (as `relay domains add`), its attestation holding unless told otherwise. */
export async function addMemberDomain(
  h: Pick<Harness, 'sql' | 'keyring'>,
  member: { did: string },
  domain: string,
  opts: DomainOpts = {},
): Promise<AddedDomain> {
  const added = await addDomain(h.sql, h.keyring, { did: member.did, domain, maxDomains: 2, actor: 'operator:test' })
  await settleDomain(h.sql, added, opts)
  return added
}

async function settleDomain(sql: Pool, d: { did: string; domain: string; domainId: number }, opts: DomainOpts) {
  await setHolds(sql, d.did, d.domain, opts.holds ?? true)
  if (opts.activatedDaysAgo !== undefined) {
    await sql`update domains set activated_at = now() - make_interval(days => ${opts.activatedDaysAgo}) where id = ${d.domainId}`
  }
}

/** verification_status(did, domain) as the labeler writes it: holds while the attestation verifies. */
export async function setHolds(sql: Pool, did: string, domain: string, holds: boolean): Promise<void> {
  await sql`
    insert into verification_status (did, domain, holds, last_outcome, last_run_at, last_pass_at)
    values (${did}, ${domain}, ${holds}, ${holds ? 'pass' : 'fail'}, now(), ${holds ? new Date() : null})
    on conflict (did, domain) do update set holds = excluded.holds, last_outcome = excluded.last_outcome,
      last_run_at = excluded.last_run_at`
}

/** The DKIM TXT records of a member's domains, as a TestDnsServer zone. */
export function dkimZone(...added: Array<{ keys: NewDkimKey[] }>): Record<string, { TXT: string[] }> {
  return Object.fromEntries(added.flatMap((a) => a.keys.map((k) => [k.txtName, { TXT: [k.txt] }])))
}

/** Writes the member's verified-mail-operator label the way the labeler stores it (one row per src, uri, val). */
export async function setLabel(sql: Pool, did: string, state: { neg: boolean; exp?: string | null }): Promise<void> {
  const src = 'did:key:zQ3shTestLabeler'
  const [key] = await sql<{ id: number }[]>`
    insert into label_signing_keys (did_key) values (${src})
    on conflict (did_key) do update set retired_at = null returning id::int as id`
  await sql`delete from labels where src = ${src} and uri = ${did} and val = 'verified-mail-operator'`
  await sql`
    insert into labels (seq, src, uri, val, neg, cts, exp, sig, signing_key_id, reason)
    values (nextval('label_seq'), ${src}, ${did}, 'verified-mail-operator', ${state.neg}, ${new Date().toISOString()},
            ${state.exp ?? null}, ${Buffer.alloc(64)}, ${key!.id}, 'test')`
}

/** The pool's DKIM public key (`p=`). */
export async function poolPublicKey(sql: Pool): Promise<string> {
  return (await activePoolKey(sql, POOL_DOMAIN))!.publicKey
}

/** A nodemailer client that submits over STARTTLS with AUTH (certificate not checked: it is self-signed). */
export function submitter(port: number, user: string, pass: string, extra: Record<string, unknown> = {}) {
  return createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    requireTLS: true,
    auth: { user, pass },
    tls: { rejectUnauthorized: false },
    ...extra,
  })
}

/** A message as raw RFC 5322 text with CRLF line breaks. */
export function rfc822(headers: Record<string, string>, body: string): string {
  return `${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n')}\r\n\r\n${body}`
}

/** Sends a raw message through nodemailer, so that the test controls every header and byte. */
export async function submitRaw(
  port: number,
  member: { username: string; password: string },
  envelope: { from: string; to: string[] },
  raw: string | Buffer,
): Promise<{ response: string }> {
  const t = submitter(port, member.username, member.password)
  try {
    return await t.sendMail({ envelope, raw })
  } finally {
    t.close()
  }
}

/** What an SMTP error from nodemailer carries. */
export type SmtpError = Error & { responseCode?: number; response?: string; command?: string }

export async function refusal(p: Promise<unknown>): Promise<SmtpError> {
  try {
    await p
  } catch (err) {
    return err as SmtpError
  }
  throw new Error('expected the submission to be refused')
}

/**
 * A line-by-line SMTP client for what nodemailer will not send (source routes, quoted
 * local parts, AUTH without TLS): each command returns the server's full reply.
 */
export class SmtpDialog {
  private socket: Socket | TLSSocket
  private buffer = ''
  private waiting: ((reply: string) => void) | undefined
  private readonly replies: string[] = []

  private constructor(socket: Socket) {
    this.socket = socket
    this.listen(socket)
  }

  static async open(port: number): Promise<{ dialog: SmtpDialog; greeting: string }> {
    const socket = netConnect(port, '127.0.0.1')
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
    const dialog = new SmtpDialog(socket)
    return { dialog, greeting: await dialog.next() }
  }

  private listen(socket: Socket | TLSSocket) {
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      this.buffer += chunk
      // A reply ends with a line whose code is followed by a space.
      for (;;) {
        const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(this.buffer)
        if (!m) break
        this.buffer = this.buffer.slice(m[0].length)
        const reply = m[0].trimEnd()
        if (this.waiting) {
          const w = this.waiting
          this.waiting = undefined
          w(reply)
        } else this.replies.push(reply)
      }
    })
  }

  private next(): Promise<string> {
    const queued = this.replies.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    return new Promise((resolve) => {
      this.waiting = resolve
    })
  }

  async send(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`)
    return this.next()
  }

  /** Bytes without waiting for a reply (a message trickled into DATA). */
  write(text: string): void {
    this.socket.write(text)
  }

  async starttls(): Promise<string> {
    const reply = await this.send('STARTTLS')
    if (!reply.startsWith('220')) return reply
    this.socket.removeAllListeners('data')
    const secure = tlsConnect({ socket: this.socket as Socket, rejectUnauthorized: false, servername: 'localhost' })
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject))
    this.socket = secure
    this.listen(secure)
    return reply
  }

  async login(username: string, password: string): Promise<string> {
    return this.send(`AUTH PLAIN ${Buffer.from(`\0${username}\0${password}`).toString('base64')}`)
  }

  close(): void {
    this.socket.destroy()
  }
}

/** A resolver for mailauth that asks the test's DNS server only. */
export function dnsResolverFor(address: string): (name: string, rr: string) => Promise<unknown> {
  const resolver = new Resolver({ timeout: 1000, tries: 1 })
  resolver.setServers([address])
  return (name, rr) => resolver.resolve(name, rr as 'TXT')
}

/** Runs the relay CLI as its own process, without blocking this one. */
export function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return runEntry(CLI, args, env)
}

/** Spooled copies of everything accepted so far, oldest first. */
export async function spooled(sql: Pool) {
  return sql<
    {
      id: string
      memberId: number
      domainId: number | null
      envelopeFrom: string
      returnPath: string
      body: Buffer
      address: string
      domain: string
    }[]
  >`
    select m.id, m.member_id::int as "memberId", m.domain_id::int as "domainId", m.envelope_from as "envelopeFrom", m.return_path as "returnPath", m.body,
           r.address, r.domain
    from messages m join message_recipients r on r.message_id = m.id
    order by m.received_at, r.id`
}
