import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createPool, type Pool } from '@atmos/db'
import { ATTESTATION, attestationRecord, LabelSubscriber, labelerEnv, queryLabels } from '@atmos/labeler/test-harness'
import { type SignedLabel, verifyLabel } from '@atmos/labels'
import { BOUNCE_DOMAIN, POOL_DOMAIN, relayFiles, runCli, submissionEnv } from '@atmos/relay/test-harness'
import { createKeyringFile } from '@atmos/secrets'
import {
  createTestDatabase,
  goodMailZone,
  JetstreamServer,
  MxSink,
  PlcDirectoryServer,
  ServiceProcess,
  type SinkMessage,
  type TestDatabase,
  TestDnsServer,
} from '@atmos/testkit'
import { createTransport, type Transporter } from 'nodemailer'
import { dsn } from '../../services/fbl-ingest/test/reports.ts'

// The chaos pass of issue 16: a burst of submissions while every service in turn is killed
// with SIGKILL and restarted, and the test's own Redis is killed once and replaced by an
// empty one. Afterwards every message answered 250 was delivered or is recorded as bounced,
// and the label stream replays in order, once each, signed, matching queryLabels.

const MESSAGES = Number(process.env.ATMOS_CHAOS_MESSAGES ?? 1000)
const CLIENTS = 6
const MEMBER_DOMAIN = 'member.example'
const RECIPIENT_DOMAIN = 'recipient.example'
const SINK_HOST = '127.0.0.2'
const FBL_HOST = '127.0.0.3'
const DID = 'did:plc:chaosmember2xyoun6zhxrhs6'
/** Members whose attestations come and go during the burst, keeping the labeler labelling. */
const CHURN = Array.from({ length: 8 }, (_, i) => ({
  did: `did:plc:chaoschurn${i}xyoun6zhxrhs6`,
  domain: `churn${i}.example`,
}))

const services = (name: string) => new URL(`../../services/${name}/src/index.ts`, import.meta.url)
const to = (n: number) => `r${n}@${RECIPIENT_DOMAIN}`
const numberOf = (address: string) => {
  const m = /^r(\d+)@recipient\.example$/.exec(address)
  return m ? Number(m[1]) : undefined
}
/** A permanent refusal at the MX: these are accounted for as bounced, not delivered. */
const hardBounces = (n: number) => n % 50 === 7
/** A temporary refusal of the first attempt: the relay retries and delivers. */
const softBounces = (n: number) => n % 25 === 3
/** Accepted by the MX, then bounced later with a DSN to the pool's inbound (fbl-ingest). */
const lateBounces = (n: number) => n % 20 === 11

async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** A Redis of the test's own, keeping nothing on disk: a restart comes back empty. */
class OwnRedis {
  child: ChildProcess | undefined
  readonly port: number
  constructor(port: number) {
    this.port = port
  }
  get url() {
    return `redis://127.0.0.1:${this.port}/0`
  }
  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    this.child = child
    await new Promise<void>((resolve, reject) => {
      let out = ''
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d
        if (out.includes('Ready to accept connections')) resolve()
      })
      child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${out}`)))
    })
  }
  async kill(): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }
}

/** A service run as its own process, restartable with the same environment. */
class Service {
  proc!: ServiceProcess
  readonly generations: ServiceProcess[] = []
  readonly name: string
  readonly entry: URL
  readonly env: Record<string, string>
  readonly ready: (l: { msg?: string }) => boolean
  constructor(name: string, entry: URL, env: Record<string, string>, ready: (l: { msg?: string }) => boolean) {
    this.name = name
    this.entry = entry
    this.env = env
    this.ready = ready
  }
  async start(): Promise<void> {
    this.proc = new ServiceProcess(this.entry, this.env)
    this.generations.push(this.proc)
    await this.proc.waitForLog(this.ready, 90_000)
  }
  async kill(): Promise<void> {
    const exit = await this.proc.stop('SIGKILL')
    assert.equal(exit.signal, 'SIGKILL', `${this.name} was killed`)
  }
  logs(): string {
    return this.generations.map((p, i) => `--- ${this.name} #${i + 1}\n${p.dump()}`).join('\n')
  }
}

/** A subscribeLabels client that reconnects from the last seq it saw whenever the labeler goes away. */
class FollowingSubscriber {
  readonly seen: Array<{ seq: number; label: Record<string, unknown> }> = []
  private current: LabelSubscriber | undefined
  private stopped = false
  private readonly done: Promise<void>
  readonly xrpc: string
  constructor(xrpc: string) {
    this.xrpc = xrpc
    this.done = this.loop()
  }
  private async loop() {
    while (!this.stopped) {
      const cursor = this.seen.at(-1)?.seq ?? 0
      const sub = new LabelSubscriber(this.xrpc, cursor)
      sub.socket.on('error', () => {})
      this.current = sub
      let taken = 0
      while (!sub.closed && !this.stopped) {
        const labels = sub.labels()
        for (; taken < labels.length; taken++) this.seen.push(labels[taken]!)
        await sleep(50)
      }
      const labels = sub.labels()
      for (; taken < labels.length; taken++) this.seen.push(labels[taken]!)
      if (!this.stopped) await sleep(200)
    }
  }
  async stop() {
    this.stopped = true
    this.current?.close()
    await this.done
  }
}

async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`)
    await sleep(200)
  }
}

let tdb: TestDatabase
let sql: Pool
let redis: OwnRedis
let dns: TestDnsServer
let plc: PlcDirectoryServer
let jetstream: JetstreamServer
let sink: MxSink
let mxPort: number
let didKey: string
let xrpc: string
let submissionPort: number
let credentials: { user: string; pass: string }
const all: Service[] = []
let labeler: Service
let submission: Service
let delivery: Service
let scheduler: Service
let fbl: Service
let admin: Service
let live: FollowingSubscriber | undefined
/** Set when the test ends, passed or not: background loops stop. */
let finished = false

before(async () => {
  tdb = await createTestDatabase()
  sql = createPool({ url: tdb.url, poolMax: 3 })
  redis = new OwnRedis(await freePort())
  await redis.start()
  plc = await new PlcDirectoryServer().start()
  jetstream = await new JetstreamServer().start()
  dns = new TestDnsServer({
    ...goodMailZone(MEMBER_DOMAIN, DID),
    ...Object.assign({}, ...CHURN.map((c) => goodMailZone(c.domain, c.did))),
  })
  await dns.start()
  // Bounce notices to the member come back to the sink too; recipients' mail goes there.
  dns.set(`mx.${MEMBER_DOMAIN}`, { A: [SINK_HOST] })
  dns.set(RECIPIENT_DOMAIN, { MX: [{ priority: 10, exchange: `mx.${RECIPIENT_DOMAIN}` }] })
  dns.set(`mx.${RECIPIENT_DOMAIN}`, { A: [SINK_HOST] })
  for (const domain of [BOUNCE_DOMAIN, POOL_DOMAIN]) {
    dns.set(domain, { MX: [{ priority: 10, exchange: `inbound.${POOL_DOMAIN}` }] })
  }
  dns.set(`inbound.${POOL_DOMAIN}`, { A: [FBL_HOST] })

  sink = new MxSink({ host: SINK_HOST })
  const tried = new Set<number>()
  sink.onMessage = (address) => {
    const n = numberOf(address)
    if (n === undefined) return undefined
    if (hardBounces(n)) return { code: 550, text: '5.1.1 no such mailbox here' }
    if (softBounces(n) && !tried.has(n)) {
      tried.add(n)
      return { code: 451, text: '4.3.0 mailbox temporarily unavailable' }
    }
    return undefined
  }
  // Replies held a moment keep sessions busy, so that the delivery kill lands mid-attempt.
  sink.dataDelayMs = 60
  mxPort = await sink.start()

  const prefix = 'atmos-chaos'
  const common = {
    ATMOS_DATABASE_URL: tdb.url,
    ATMOS_REDIS_URL: redis.url,
    ATMOS_REDIS_PREFIX: prefix,
    ATMOS_HTTP_PORT: '0',
    ATMOS_LOG_LEVEL: 'info',
  }
  const setup = await labelerEnv({
    databaseUrl: tdb.url,
    jetstreamUrl: jetstream.url,
    dnsPort: dns.port,
    plcUrl: plc.url,
  })
  didKey = setup.didKey
  const xrpcPort = await freePort()
  xrpc = `http://127.0.0.1:${xrpcPort}`
  labeler = new Service(
    'labeler',
    services('labeler'),
    {
      ...setup.env,
      ...common,
      ATMOS_LABELER_XRPC_PORT: String(xrpcPort),
      ATMOS_LABELER_INGEST_RECONCILE_INTERVAL: '2s',
    },
    (l) => l.msg === 'started',
  )

  const files = relayFiles()
  submissionPort = await freePort()
  const relayCommon = submissionEnv({ databaseUrl: tdb.url, redisPrefix: prefix, files, extra: common })
  const relayDelivery = {
    ATMOS_RELAY_DELIVERY_MX_PORT: String(mxPort),
    ATMOS_RELAY_DELIVERY_ALLOWED_PRIVATE_NETWORKS: '127.0.0.0/8',
    ATMOS_RELAY_DELIVERY_DNS_SERVERS: '127.0.0.1',
    ATMOS_RELAY_DELIVERY_DNS_PORT: String(dns.port),
    ATMOS_RELAY_DELIVERY_DNS_TIMEOUT: '500ms',
    ATMOS_RELAY_DELIVERY_DNS_TRIES: '1',
    ATMOS_RELAY_DELIVERY_CONNECT_TIMEOUT: '2s',
    ATMOS_RELAY_DELIVERY_GREETING_TIMEOUT: '2s',
    ATMOS_RELAY_DELIVERY_SOCKET_TIMEOUT: '5s',
    // Retries long enough to sit in Redis as delayed jobs when Redis goes.
    ATMOS_RELAY_DELIVERY_RETRY_SCHEDULE: '3s,5s',
    ATMOS_RELAY_DELIVERY_CLAIM_LEASE: '3s',
    ATMOS_RELAY_DELIVERY_RECONCILE_INTERVAL: '1s',
    ATMOS_RELAY_DELIVERY_CONCURRENCY: '10',
    ATMOS_RELAY_DELIVERY_SHAPING_SLOT_LEASE: '3s',
    ATMOS_RELAY_DELIVERY_SHAPING_SLOT_WAIT: '2s',
    ATMOS_RELAY_DELIVERY_SHAPING_IDLE_TIMEOUT: '500ms',
  }
  const relayEnv = {
    ...relayCommon,
    ...relayDelivery,
    // Only this labeler's labels count.
    ATMOS_RELAY_SUBMISSION_LABELER_DID: didKey,
    ATMOS_RELAY_SUBMISSION_PORT: String(submissionPort),
    // One member sends the whole burst on its first day.
    ATMOS_RELAY_SUBMISSION_WARMING_TIERS: '0:100000',
    ATMOS_RELAY_SUBMISSION_DAILY_CAP: '100000',
    ATMOS_RELAY_SUBMISSION_MAX_CONNECTIONS_PER_MEMBER: String(CLIENTS * 2),
    ATMOS_RELAY_SUBMISSION_MAX_CONNECTIONS_PER_ADDRESS: String(CLIENTS * 2),
  }
  // Two relay processes, one per role, as infra/ deploys them.
  submission = new Service(
    'relay-submission',
    services('relay'),
    { ...relayEnv, ATMOS_RELAY_ROLES: 'submission' },
    (l) => l.msg === 'submission listening (STARTTLS)',
  )
  delivery = new Service(
    'relay-delivery',
    services('relay'),
    { ...relayEnv, ATMOS_RELAY_ROLES: 'delivery' },
    (l) => l.msg === 'delivery workers started',
  )
  scheduler = new Service(
    'scheduler',
    services('scheduler'),
    // Re-verification runs during the burst, so that the kill lands on a scheduler at work.
    { ...common, ATMOS_SCHEDULER_REVERIFY_INTERVAL: '20s', ATMOS_SCHEDULER_VERIFY_RATE: '20' },
    (l) => l.msg === 'started',
  )
  fbl = new Service(
    'fbl-ingest',
    services('fbl-ingest'),
    {
      ...common,
      ATMOS_FBL_INGEST_POOL_DOMAIN: POOL_DOMAIN,
      ATMOS_FBL_INGEST_POOL_BOUNCE_DOMAIN: BOUNCE_DOMAIN,
      ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE: files.tokenSecretFile,
      ATMOS_FBL_INGEST_POOL_KEK_FILE: files.poolKekFile,
      ATMOS_FBL_INGEST_SMTP_HOST: FBL_HOST,
      ATMOS_FBL_INGEST_SMTP_PORT: String(mxPort),
      ATMOS_FBL_INGEST_OPERATOR_INBOX: 'ops@operator.example',
      ATMOS_FBL_INGEST_DNS_SERVERS: dns.address,
      // The burst's bounces must not suspend the member mid-test.
      ATMOS_FBL_INGEST_THRESHOLDS_BOUNCE_WARN: '1',
      ATMOS_FBL_INGEST_THRESHOLDS_BOUNCE_SUSPEND: '1',
      ATMOS_FBL_INGEST_WORKER_RECONCILE_INTERVAL: '2s',
    },
    (l) => l.msg === 'started',
  )
  const adminDir = mkdtempSync(join(tmpdir(), 'atmos-chaos-admin-'))
  createKeyringFile(join(adminDir, 'kek'))
  admin = new Service(
    'admin',
    services('admin'),
    {
      ...common,
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: join(adminDir, 'kek'),
      ATMOS_ADMIN_ENROLL_KEK_FILE: files.kekFile,
      ATMOS_ADMIN_LABELER_URL: xrpc,
      ATMOS_ADMIN_LABELER_DID: didKey,
      ATMOS_ADMIN_OAUTH_PLC_URL: plc.url,
    },
    (l) => l.msg === 'started',
  )
  all.push(labeler, submission, delivery, scheduler, fbl, admin)

  // The operator's commands, then every service side by side (each start costs seconds).
  const [keys, added] = await Promise.all([
    runCli(['keys', 'init'], relayEnv),
    runCli(['members', 'add', '--did', DID, '--domain', MEMBER_DOMAIN], relayEnv),
    ...all.map((s) => s.start()),
  ])
  assert.equal(keys.code, 0, keys.err)
  const poolKey = /^(\S+)\. IN TXT (.+)$/m.exec(keys.out)
  assert.ok(poolKey, keys.out)
  dns.set(poolKey[1]!, { TXT: [[...poolKey[2]!.matchAll(/"([^"]*)"/g)].map((s) => s[1]!)] })
  assert.equal(added.code, 0, added.err)
  const selectors: string[] = []
  for (const m of added.out.matchAll(/^(\S+)\._domainkey\.member\.example\. IN TXT (.+)$/gm)) {
    selectors.push(m[1]!)
    dns.set(`${m[1]}._domainkey.${MEMBER_DOMAIN}`, { TXT: [[...m[2]!.matchAll(/"([^"]*)"/g)].map((s) => s[1]!)] })
  }
  credentials = {
    user: /^SMTP username: (\S+)$/m.exec(added.out)?.[1] ?? '',
    pass: /^SMTP password: (\S+)$/m.exec(added.out)?.[1] ?? '',
  }
  // The churning members are enrolled in the relay, as the labeler's relay-member label requires.
  for (const c of CHURN) {
    await sql`
      with m as (insert into members (did, status, activated_at) values (${c.did}, 'active', now()) returning id)
      insert into domains (member_id, domain, status, activated_at) select id, ${c.domain}, 'active', now() from m`
  }

  await waitFor('the labeler to follow Jetstream', 30_000, async () => (jetstream.clientCount ? true : undefined))
  jetstream.commit(DID, {
    operation: 'create',
    collection: ATTESTATION,
    rkey: MEMBER_DOMAIN,
    cid: 'bafychaosmember',
    record: attestationRecord(MEMBER_DOMAIN, selectors),
  })
  await waitFor('the member labelled', 60_000, async () => {
    const labels = await queryLabels(xrpc, DID)
    return labels.filter((l) => !l.neg).length === 2 ? true : undefined
  })
})

after(async () => {
  finished = true
  await live?.stop()
  // Every process's log, each generation, for reading a failure (or a pass) afterwards.
  const logDir = process.env.ATMOS_CHAOS_LOG_DIR
  if (logDir) {
    mkdirSync(logDir, { recursive: true })
    for (const s of all) writeFileSync(join(logDir, `${s.name}.log`), s.logs())
  }
  for (const s of all) if (s.proc) await s.proc.stop('SIGKILL')
  await sink?.close()
  await jetstream?.close()
  await plc?.close()
  await dns?.close()
  await redis?.kill()
  await sql?.end({ timeout: 5 })
  await tdb?.drop()
})

/** A receiver's DSN for message `n`, sent to where DNS says the bounce domain's mail goes. */
async function sendDsn(m: SinkMessage, n: number): Promise<string> {
  const transport = createTransport({
    host: FBL_HOST,
    port: mxPort,
    secure: false,
    tls: { rejectUnauthorized: false },
    name: 'mx.recipient.example',
    connectionTimeout: 3_000,
    greetingTimeout: 3_000,
    socketTimeout: 10_000,
  })
  const headerEnd = m.raw.indexOf('\r\n\r\n')
  try {
    const info = await transport.sendMail({
      envelope: { from: false as unknown as string, to: [m.mailFrom] },
      raw: dsn({
        to: m.mailFrom,
        recipient: to(n),
        status: '5.1.1',
        diagnostic: `550 5.1.1 <${to(n)}>: Recipient address rejected: User unknown`,
        returnedHeaders: headerEnd < 0 ? m.raw : m.raw.slice(0, headerEnd),
      }),
    })
    return info.response ?? ''
  } finally {
    transport.close()
  }
}

type Outcome = { accepted: boolean; refusal?: string; tries: number }

/** One client connection's worth of submissions, resending whatever did not get its 250. */
async function client(
  queue: number[],
  outcomes: Map<number, Outcome>,
  accepted: { count: number },
  onAccepted: () => void,
  pace: () => Promise<void>,
) {
  let transport: Transporter | undefined
  const fresh = () =>
    createTransport({
      host: '127.0.0.1',
      port: submissionPort,
      secure: false,
      requireTLS: true,
      auth: { user: credentials.user, pass: credentials.pass },
      tls: { rejectUnauthorized: false },
      pool: true,
      maxConnections: 1,
      maxMessages: 50,
      connectionTimeout: 5_000,
      greetingTimeout: 5_000,
      socketTimeout: 15_000,
    })
  for (;;) {
    await pace()
    const n = queue.shift()
    if (n === undefined) break
    const outcome: Outcome = { accepted: false, tries: 0 }
    outcomes.set(n, outcome)
    const raw = [
      `From: Member <noreply@${MEMBER_DOMAIN}>`,
      `To: <${to(n)}>`,
      `Subject: chaos ${n}`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: <chaos-${n}@${MEMBER_DOMAIN}>`,
      `X-Chaos-Id: ${n}`,
      '',
      `Message ${n} of the chaos pass.`,
      '',
    ].join('\r\n')
    for (;;) {
      outcome.tries++
      transport ??= fresh()
      try {
        const info = await transport.sendMail({ envelope: { from: `noreply@${MEMBER_DOMAIN}`, to: [to(n)] }, raw })
        if (/^250 /.test(info.response ?? '')) {
          outcome.accepted = true
          accepted.count++
          onAccepted()
          break
        }
        throw new Error(`unexpected reply ${info.response}`)
      } catch (err) {
        const e = err as { responseCode?: number; response?: string }
        if (e.responseCode && e.responseCode >= 500 && e.responseCode < 600) {
          // A resend of a message whose first copy was accepted and hard-bounced: the
          // address is suppressed now. Not accepted; accounted for by the first copy.
          outcome.refusal = e.response ?? String(e.responseCode)
          break
        }
        // The connection was reset by a kill, or the service is starting: as a real client, resend.
        transport.close()
        transport = undefined
        if (outcome.tries > 200) throw new Error(`message ${n} never accepted: ${e.response ?? err}`)
        await sleep(250)
      }
    }
  }
  transport?.close()
}

it('a burst of submissions survives SIGKILL of every service and a Redis restart: none lost', async (t) => {
  live = new FollowingSubscriber(xrpc)
  const outcomes = new Map<number, Outcome>()
  const accepted = { count: 0 }
  const queue = Array.from({ length: MESSAGES }, (_, n) => n)

  // The chaos schedule: one blow every eighth of the burst, each waiting for the previous
  // victim to be back. Churn of attestations keeps the labeler working through its kill.
  const churnEvents: Array<{ did: string; domain: string; op: 'create' | 'delete' }> = []
  const churn = (i: number) => {
    const c = CHURN[i % CHURN.length]!
    const op = i < CHURN.length ? 'create' : 'delete'
    churnEvents.push({ ...c, op })
    jetstream.commit(c.did, {
      operation: op,
      collection: ATTESTATION,
      rkey: c.domain,
      ...(op === 'create' ? { cid: `bafychurn${i}`, record: attestationRecord(c.domain) } : {}),
    })
  }
  const churnTotal = CHURN.length + CHURN.length / 2
  // Redis goes last: by then every service has been restarted once, and each must find
  // its way back to an empty Redis by itself (queues, schedulers, delayed retries).
  let redisBackAt = 0
  let schedulerMark = 0
  const blows: Array<{ name: string; hit: () => Promise<void> }> = [
    ...[labeler, submission, delivery, scheduler, fbl, admin].map((s) => ({
      name: s.name,
      hit: async () => {
        await s.kill()
        // An attestation event while the labeler is down: its saved cursor must bring it back.
        if (s === labeler && churnEvents.length < churnTotal) churn(churnEvents.length)
        await s.start()
      },
    })),
    {
      name: 'redis',
      hit: async () => {
        await redis.kill()
        await sleep(500)
        await redis.start()
        redisBackAt = Date.now()
        schedulerMark = scheduler.proc.logs.length
      },
    },
  ]
  const step = Math.floor(MESSAGES / (blows.length + 1))
  let blowsDone = 0
  let lastBlowAt = 0
  const onAccepted = () => {
    // Attestations come and go through the burst: a create each, later a delete for half.
    if (accepted.count % Math.floor(MESSAGES / (churnTotal + 2)) === 0 && churnEvents.length < churnTotal)
      churn(churnEvents.length)
  }
  // A restart takes seconds, the burst could outrun the schedule: a client holds back while
  // more than a step ahead of the blow under way, so that every blow lands mid-burst.
  const pace = async () => {
    while (blowsDone < blows.length && accepted.count >= step * (blowsDone + 2) && !finished) await sleep(50)
  }
  const timings: string[] = []
  const chaos = (async () => {
    for (const [k, blow] of blows.entries()) {
      while (accepted.count < step * (k + 1) && !finished) await sleep(50)
      const started = Date.now()
      const at = accepted.count
      await blow.hit()
      lastBlowAt = Date.now()
      timings.push(`${blow.name} killed at ${at} accepted, back in ${lastBlowAt - started} ms`)
      blowsDone++
    }
  })()

  // Late bounces: the MX accepted, then its DSN goes to the bounce domain's MX, fbl-ingest,
  // which answers 250 only once the report is stored. Sent through the burst so that its
  // kill lands on reports in flight; one not answered 250 is sent again, as an MTA would.
  const dsnAccepted = new Set<number>()
  let dsnSending = true
  const dsnLoop = (async () => {
    const pending = new Map<number, SinkMessage>()
    let scanned = 0
    const deadline = () => !dsnSending && Date.now() > dsnStoppedAt + 60_000
    while (!deadline() && !finished) {
      const last = !dsnSending
      for (; scanned < sink.received.length; scanned++) {
        const m = sink.received[scanned]!
        const n = numberOf(m.rcptTo[0] ?? '')
        if (m.mailFrom && n !== undefined && lateBounces(n) && !dsnAccepted.has(n)) pending.set(n, m)
      }
      for (const [n, m] of pending) {
        const reply = await sendDsn(m, n).catch((err: Error) => err.message)
        if (!/^250 /.test(reply)) break
        dsnAccepted.add(n)
        pending.delete(n)
      }
      // Sending stopped before this pass's scan: nothing more will arrive.
      if (last && pending.size === 0) break
      await sleep(200)
    }
  })()
  let dsnStoppedAt = 0

  const burstStarted = Date.now()
  await Promise.all(Array.from({ length: CLIENTS }, () => client(queue, outcomes, accepted, onAccepted, pace)))
  const burstMs = Date.now() - burstStarted
  await chaos
  for (let i = churnEvents.length; i < churnTotal; i++) churn(i)
  assert.equal(blowsDone, blows.length, 'every blow was dealt during the burst')

  const acceptedIds = [...outcomes].filter(([, o]) => o.accepted).map(([n]) => n)
  const refused = [...outcomes].filter(([, o]) => !o.accepted)
  // Only a resend of a message already accepted and hard-bounced may be refused.
  for (const [n, o] of refused) assert.ok(hardBounces(n), `message ${n} refused: ${o.refusal}`)

  // Drain: every accepted message delivered to the sink or recorded as bounced.
  const delivered = () => {
    const copies = new Map<number, number>()
    for (const m of sink.received) {
      if (m.mailFrom === '') continue
      const n = numberOf(m.rcptTo[0] ?? '')
      if (n !== undefined) copies.set(n, (copies.get(n) ?? 0) + 1)
    }
    return copies
  }
  const bouncedRows = async () =>
    new Set(
      (
        await sql<{ address: string }[]>`
          select address from message_recipients where state = 'bounced' and domain = ${RECIPIENT_DOMAIN}`
      ).map((r) => numberOf(r.address)!),
    )
  const missing = async () => {
    const copies = delivered()
    const bounced = await bouncedRows()
    return acceptedIds.filter((n) => !copies.has(n) && !bounced.has(n))
  }
  const drainStarted = Date.now()
  const lost = await waitFor('every accepted message delivered or bounced', 90_000, async () => {
    const left = await missing()
    return left.length === 0 ? left : undefined
  }).catch(async (err) => {
    const left = await missing()
    const rows = await sql`
      select r.address, r.state, r.attempts, r.last_reply, r.next_attempt_at, r.claimed_until, m.state as message_state
      from message_recipients r join messages m on m.id = r.message_id
      where r.address = any(${left.slice(0, 20).map(to)})`
    throw new Error(
      `${err.message}\n${left.length} missing: ${left.slice(0, 50).join(', ')}\n${JSON.stringify(rows, null, 1)}\n` +
        `${delivery.logs().slice(-6000)}`,
    )
  })
  assert.deepEqual(lost, [])
  // Every message has reached the sink or bounced: the late bounces' DSNs can all be sent.
  dsnStoppedAt = Date.now()
  dsnSending = false
  const drainMs = Date.now() - Math.max(lastBlowAt, drainStarted)

  const copies = delivered()
  const bounced = await bouncedRows()
  const duplicates = [...copies.values()].reduce((sum, c) => sum + c - 1, 0)
  const resends = [...outcomes.values()].reduce((sum, o) => sum + o.tries - 1, 0)
  for (const n of bounced) assert.ok(hardBounces(n), `message ${n} bounced`)
  for (const n of acceptedIds) if (hardBounces(n)) assert.ok(bounced.has(n), `message ${n} recorded as bounced`)

  // The spool: one row per accepted submission. More rows than 250s only where a kill landed
  // between the commit and the reply (the client never saw the 250 and resent).
  const [spool] = await sql<{ n: number; distinct: number }[]>`
    select count(*)::int as n, count(distinct address)::int as distinct
    from message_recipients where domain = ${RECIPIENT_DOMAIN}`
  // A refused resend's first copy was spooled (that is why its address is suppressed).
  assert.equal(spool!.distinct, acceptedIds.length + refused.length)

  // Duplicates at the sink come from a delivery killed between the MX's 250 and the
  // relay's commit of "delivered" (a lapsed claim is taken over and sent again), or from
  // a submission killed between its spool commit and the 250 (the client resends). Both
  // are bounded by what was in flight at the kill: the delivery concurrency (10) plus the
  // client connections (6), once each.
  const spooledTwice = spool!.n - spool!.distinct
  t.diagnostic(
    `accepted ${acceptedIds.length}, delivered ${copies.size}, bounced ${bounced.size}, duplicates ${duplicates}, ` +
      `spooled twice ${spooledTwice}, resends ${resends}, refused resends ${refused.length}`,
  )
  t.diagnostic(
    `burst ${burstMs} ms; drain after the last blow ${drainMs} ms; Redis back at +${redisBackAt - burstStarted} ms`,
  )
  t.diagnostic(`late bounces reported to fbl-ingest: ${dsnAccepted.size}`)
  for (const line of timings) t.diagnostic(line)
  assert.ok(duplicates <= 10 + CLIENTS, `${duplicates} duplicate deliveries`)
  assert.ok(spooledTwice <= CLIENTS, `${spooledTwice} messages spooled twice`)

  // Each hard bounce sent its sender one bounce notice (RFC 3464), through the same kills;
  // a second copy only where a delivery was killed mid-attempt, as for any message.
  const notices = () => {
    const by = new Map<number, number>()
    for (const m of sink.received) {
      if (m.mailFrom !== '' || !m.rcptTo.includes(`noreply@${MEMBER_DOMAIN}`)) continue
      const id = /^In-Reply-To: <chaos-(\d+)@/im.exec(m.raw)?.[1]
      if (id !== undefined) by.set(Number(id), (by.get(Number(id)) ?? 0) + 1)
    }
    return by
  }
  await waitFor('a bounce notice for every hard bounce', 60_000, async () =>
    [...bounced].every((n) => notices().has(n)) ? true : undefined,
  ).catch((err) => {
    throw new Error(`${err.message}: ${[...bounced].filter((n) => !notices().has(n)).join(', ')}`)
  })
  const noticeCopies = [...notices().values()].reduce((sum, c) => sum + c - 1, 0)
  t.diagnostic(`bounce notices ${notices().size}, second copies ${noticeCopies}`)
  assert.ok(duplicates + noticeCopies <= 10 + CLIENTS, `${noticeCopies} duplicate notices`)

  // Every late bounce fbl-ingest answered 250 became a hard-bounce event for its recipient.
  await dsnLoop
  const lateDelivered = acceptedIds.filter((n) => lateBounces(n) && copies.has(n))
  assert.deepEqual(
    lateDelivered.filter((n) => !dsnAccepted.has(n)),
    [],
    'a DSN accepted for every late bounce',
  )
  const unrecorded = async () => {
    const rows = await sql<{ recipient: string }[]>`
      select distinct recipient from feedback_events where type = 'hard_bounce' and recipient like ${`%@${RECIPIENT_DOMAIN}`}`
    const recorded = new Set(rows.map((r) => numberOf(r.recipient)))
    return [...dsnAccepted].filter((n) => !recorded.has(n))
  }
  await waitFor('a hard-bounce event for every DSN accepted', 60_000, async () =>
    (await unrecorded()).length === 0 ? true : undefined,
  ).catch(async (err) => {
    throw new Error(`${err.message}: ${(await unrecorded()).join(', ')}\n${fbl.logs().slice(-6000)}`)
  })

  // The scheduler still sweeps after Redis came back empty (its repeat schedule lived there).
  await waitFor('a re-verification sweep after the Redis restart', 60_000, async () =>
    scheduler.proc.logs.slice(schedulerMark).some((l) => l.msg === 'sweep enqueued') ? true : undefined,
  ).catch((err) => {
    throw new Error(`${err.message}\n${scheduler.logs().slice(-4000)}`)
  })

  // Labels: every attestation event got its label, in its latest state.
  const expected = new Map<string, boolean>([[DID, true]])
  for (const e of churnEvents) expected.set(e.did, e.op === 'create')
  const state = await waitFor('every attestation event labelled', 60_000, async () => {
    const labels = await queryLabels(xrpc, 'did:plc:chaos*')
    for (const [did, holds] of expected) {
      const mine = labels.filter((l) => l.uri === did)
      const vals = ['verified-mail-operator', 'relay-member']
      if (!vals.every((v) => mine.some((l) => l.val === v && (l.neg === true) === !holds))) return undefined
    }
    return labels
  }).catch(async (err) => {
    const labels = await queryLabels(xrpc, 'did:plc:chaos*')
    throw new Error(
      `${err.message}: ${JSON.stringify(labels.map((l) => [l.uri.slice(-20), l.val, l.neg]))}\n${labeler.logs().slice(-6000)}`,
    )
  })

  // Each reconnection to Jetstream after the first resumed from a saved cursor, not live.
  assert.ok(jetstream.connections.length >= 2, 'the labeler reconnected after its kill')
  for (const c of jetstream.connections.slice(1))
    assert.ok(c.cursor !== undefined && c.cursor > 0, `a reconnection without a cursor: ${JSON.stringify(c)}`)

  // The stream from cursor 0: seq strictly increasing, each (uri, val) once, signed, and the
  // same set as queryLabels. Seqs may skip: a label that changed moved to a new seq (the
  // old row is gone) and a rolled-back transaction spends a sequence value; what must hold
  // is that the replay is the whole current state, in order, with nothing twice.
  const replay = new LabelSubscriber(xrpc, 0)
  replay.socket.on('error', () => {})
  await replay.opened()
  const frames = await waitFor('the replay', 30_000, async () => {
    const l = replay.labels()
    return l.length >= state.length ? l : undefined
  })
  await sleep(300)
  replay.close()
  const replayed = replay.labels()
  assert.equal(replayed.length, frames.length)
  const seqs = replayed.map((f) => f.seq)
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `seq ${seqs[i]} after ${seqs[i - 1]}`)
  const key = (l: Record<string, unknown>) => `${l.uri}|${l.val}`
  assert.equal(new Set(replayed.map((f) => key(f.label))).size, replayed.length, 'a label replayed twice')
  for (const f of replayed)
    assert.equal(await verifyLabel(f.label as unknown as SignedLabel, didKey), true, `seq ${f.seq} signed`)
  const asState = (labels: Array<Record<string, unknown>>) =>
    new Map(labels.map((l) => [key(l), `${l.neg === true}|${l.cts}`]))
  assert.deepEqual(
    asState(replayed.map((f) => f.label)),
    asState(state as unknown as Array<Record<string, unknown>>),
    'the replay is queryLabels',
  )

  // The subscriber that followed live through the kills, resuming from its last seq each
  // time, saw every change: its latest view of each label is the current state.
  await live.stop()
  const liveSeqs = live.seen.map((f) => f.seq)
  for (let i = 1; i < liveSeqs.length; i++)
    assert.ok(liveSeqs[i]! > liveSeqs[i - 1]!, `live seq ${liveSeqs[i]} after ${liveSeqs[i - 1]}`)
  assert.deepEqual(asState(live.seen.map((f) => f.label)), asState(replayed.map((f) => f.label)), 'live view')
})
