import { generateKeyPairSync, sign } from 'node:crypto'
import { createPool } from '@atmos/db'
import { BOUNCE_DOMAIN, createMember, POOL_DOMAIN, relayFiles, runCli, submissionEnv } from '@atmos/relay/test-harness'
import { loadKeyring } from '@atmos/secrets'
import {
  closedPort,
  createTestDatabase,
  deletePrefix,
  MxSink,
  ServiceProcess,
  TestDnsServer,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { startPostfix } from './postfix.ts'
import type { Figure } from './report.ts'
import {
  BODY,
  cpuSeconds,
  driveSmtp,
  type LoadResult,
  msPerMessage,
  postgresCpuSeconds,
  RECIPIENT_DOMAINS,
} from './smtp-load.ts'

const RELAY = new URL('../../services/relay/src/index.ts', import.meta.url)

/** KumoMTA's published figure: 2.7 M messages an hour on 2 CPUs. */
const KUMO_PER_SECOND = 750
const MEMBERS = 5

/**
 * What this machine's CPU allows at most: two RSA-2048 SHA-256 signatures per message (the
 * member's and the pool's DKIM signature) over a message-sized buffer, on one thread as the
 * relay signs on its one event loop.
 */
function rawSigningRate(seconds: number): number {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const message = Buffer.from(BODY)
  let messages = 0
  const t0 = performance.now()
  const until = t0 + seconds * 1000
  while (performance.now() < until) {
    sign('sha256', message, privateKey)
    sign('sha256', message, privateKey)
    messages++
  }
  return messages / ((performance.now() - t0) / 1000)
}

/** Waits until the relay answers ready (its SMTP listeners are open by then), whatever it logs. */
async function untilReady(relay: ServiceProcess, url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (relay.child.exitCode !== null) throw new Error(`relay exited at start:\n${relay.dump()}`)
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    )
    if (ok) return
    if (Date.now() > deadline) throw new Error(`relay not ready within ${timeoutMs} ms:\n${relay.dump()}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * The relay taking `messages` from `connections` nodemailer clients over STARTTLS + AUTH and
 * delivering them to a loopback sink, the recipients' MX. `processes`: one relay process
 * with both roles, or submission and delivery in a process each (as deployed).
 */
export async function benchRelay(
  messages: number,
  connections: number,
  opts: { env?: Record<string, string>; processes?: 'one' | 'split' } = {},
): Promise<Figure[]> {
  const roles = opts.processes === 'split' ? ['submission', 'delivery'] : ['submission,delivery']
  const raw = rawSigningRate(messages >= 5000 ? 3 : 1.5)

  const db = await createTestDatabase()
  const sql = createPool({ url: db.url, poolMax: 4 })
  // ATMOS_BENCH_PG_STATS=1: prints the bench database's scan counters after the relay's run
  // (which index read how many entries: how a bad plan shows), counted from here.
  const pgStats = process.env.ATMOS_BENCH_PG_STATS === '1'
  if (pgStats) await sql`select pg_stat_reset()`
  const prefix = testRedisPrefix('bench-relay')
  // Accepts everything, STARTTLS offered as real MX hosts do; counts only, as a run holds too many to keep.
  const sink = new MxSink({ size: 10 * 1024 * 1024, keep: false })
  const dns = new TestDnsServer()
  const relays: ServiceProcess[] = []
  try {
    const files = relayFiles()
    const env = submissionEnv({ databaseUrl: db.url, redisPrefix: prefix, files })
    const init = await runCli(['keys', 'init'], env)
    if (init.code !== 0) throw new Error(`relay keys init failed: ${init.err}`)
    const keyring = loadKeyring(files.kekFile)
    // Members past warming (activated 30 days ago), each holding a verified-mail-operator label.
    const members = await Promise.all(
      Array.from({ length: MEMBERS }, (_, i) =>
        createMember({ sql, keyring }, `m${i}.bench.example`, { activatedDaysAgo: 30 }),
      ),
    )

    const mxPort = await sink.start()
    dns.set('mx.sink.bench', { A: ['127.0.0.1'] })
    for (let i = 0; i < RECIPIENT_DOMAINS; i++) {
      dns.set(`r${i}.bench.example`, { MX: [{ priority: 10, exchange: 'mx.sink.bench' }] })
    }
    await dns.start()

    const port = await closedPort()
    // ATMOS_BENCH_CPU_PROF=<dir>: each relay process writes a V8 CPU profile there when it
    // stops (open it in Chrome's DevTools or speedscope); a role a subdirectory.
    const profDir = process.env.ATMOS_BENCH_CPU_PROF
    for (const role of roles) {
      const opsPort = await closedPort()
      const relay = new ServiceProcess(RELAY, {
        ...env,
        ...(profDir ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}/${role.replace(',', '+')}` } : {}),
        ATMOS_HTTP_PORT: String(opsPort),
        ATMOS_RELAY_SUBMISSION_PORT: String(port),
        ATMOS_LOG_LEVEL: 'info',
        ATMOS_RELAY_ROLES: role,
        ATMOS_RELAY_POOL_DOMAIN: POOL_DOMAIN,
        ATMOS_RELAY_POOL_BOUNCE_DOMAIN: BOUNCE_DOMAIN,
        // Caps and per-member limits out of the way: this measures the relay's own speed.
        ATMOS_RELAY_SUBMISSION_DAILY_CAP: String(10 * messages + 100_000),
        ATMOS_RELAY_SUBMISSION_MAX_CONNECTIONS_PER_MEMBER: String(connections),
        ATMOS_RELAY_SUBMISSION_MAX_MESSAGES_PER_CONNECTION: String(10 * messages),
        ATMOS_RELAY_SUBMISSION_AUTH_CONCURRENCY_PER_IP: String(connections),
        ATMOS_RELAY_SUBMISSION_MAX_CONNECTIONS_PER_ADDRESS: String(connections),
        ATMOS_RELAY_DELIVERY_MX_PORT: String(mxPort),
        // The sink is on loopback, which the relay refuses unless allowed.
        ATMOS_RELAY_DELIVERY_ALLOWED_PRIVATE_NETWORKS: '127.0.0.0/8',
        ATMOS_RELAY_DELIVERY_DNS_SERVERS: '127.0.0.1',
        ATMOS_RELAY_DELIVERY_DNS_PORT: String(dns.port),
        // Every recipient domain shares the sink's one MX site: its limit would be the
        // sum of many real sites' limits, so it is raised to the workers' concurrency.
        ATMOS_RELAY_DELIVERY_SHAPING_MAX_CONNECTIONS: '50',
        // A deferral is retried within the run instead of minutes later.
        ATMOS_RELAY_DELIVERY_RETRY_SCHEDULE: '1s',
        ...opts.env,
      })
      relays.push(relay)
      // A bound, not a wait: on a machine busy with other work a relay can take a while to start.
      await untilReady(relay, `http://127.0.0.1:${opsPort}/readyz`, 120_000)
    }
    const senders = members.map((m) => ({ username: m.username, password: m.password, domain: m.domain }))
    const relayRun = await driveSmtp({
      port,
      senders,
      messages,
      connections,
      sink,
      serverCpu: () => ({
        ...Object.fromEntries(relays.map((r, i) => [roles[i]!, cpuSeconds(r.child.pid!)])),
        postgres: postgresCpuSeconds(db.name),
      }),
    })
    const warnings = relays
      .flatMap((r) => r.logs)
      .filter((l) => l.level === 'warn' || l.level === 'error' || Number(l.level) >= 40)
    const [states] = await sql<{ deferred: number; bounced: number }[]>`
      select count(*) filter (where outcome = 'deferred')::int as deferred,
             count(*) filter (where outcome = 'failed')::int as bounced
      from delivery_attempts`
    if (pgStats) {
      console.log(
        await sql`select relname, seq_scan, seq_tup_read, idx_scan, idx_tup_fetch from pg_stat_user_tables
                  where seq_tup_read + idx_tup_fetch > 0 order by relname`,
        await sql`select relname, indexrelname, idx_scan, idx_tup_read, idx_tup_fetch from pg_stat_user_indexes
                  where idx_tup_read > 0 order by idx_tup_read desc`,
        await sql`select xact_commit, tup_returned, tup_fetched, tup_inserted, tup_updated from pg_stat_database
                  where datname = current_database()`,
      )
    }
    // The relay stops before the reference starts: each MTA has the machine to itself.
    await Promise.all(relays.splice(0).map((r) => r.stop('SIGTERM')))

    // The same-run reference: Postfix + OpenDKIM doing the same job for the same clients.
    // ATMOS_BENCH_NO_REFERENCE=1 leaves it out, for profiling rounds on the relay alone.
    if (process.env.ATMOS_BENCH_NO_REFERENCE === '1') {
      return relayFigures(relayRun, undefined, { roles, connections, raw, states, warnings: warnings.length })
    }
    const postfixSenders = senders.map((s, i) => ({ ...s, username: `member${i}` }))
    const postfix = await startPostfix({
      sinkPort: mxPort,
      tlsCertFile: files.certFile,
      tlsKeyFile: files.keyFile,
      users: postfixSenders,
      poolDomain: POOL_DOMAIN,
      concurrency: 50,
    })
    let postfixRun: LoadResult
    try {
      postfixRun = await driveSmtp({
        port: postfix.port,
        senders: postfixSenders,
        messages,
        connections,
        sink,
        serverCpu: () => postfix.cpuSeconds(),
      })
    } finally {
      await postfix.stop()
    }
    return relayFigures(relayRun, postfixRun, { roles, connections, raw, states, warnings: warnings.length })
  } finally {
    await Promise.all(relays.map((r) => r.stop('SIGTERM')))
    await sink.close()
    await dns.close()
    await sql.end({ timeout: 5 })
    const redis = testRedis()
    await deletePrefix(redis, prefix)
    await redis.quit()
    await db.drop()
  }
}

function relayFigures(
  relay: LoadResult,
  postfix: LoadResult | undefined,
  run: {
    roles: string[]
    connections: number
    raw: number
    states?: { deferred: number; bounced: number } | undefined
    warnings: number
  },
): Figure[] {
  const rate = (r: LoadResult) => r.delivered / r.deliveredSeconds
  const total = (r: LoadResult) => Object.values(r.serverCpu).reduce((a, b) => a + b, 0)
  const parts = (r: LoadResult) =>
    Object.entries(r.serverCpu)
      .map(([k, v]) => `${k} ${msPerMessage(v, r).toFixed(2)}`)
      .join(', ')
  const reference = { name: 'Postfix 3.7 + OpenDKIM 2.11, same clients, messages and sink' }
  // Without the reference run (ATMOS_BENCH_NO_REFERENCE=1) a figure carries none.
  const ref = (value: (r: LoadResult) => number) =>
    postfix ? { reference: { ...reference, value: value(postfix) } } : {}
  const runNote = (r: LoadResult) =>
    `${r.delivered} of ${r.messages} delivered in ${r.deliveredSeconds.toFixed(1)} s${r.timedOut ? ', TIMED OUT' : ''}${r.refused ? `, ${r.refused} refused: ${r.firstRefusal.slice(0, 120)}` : ''}${r.warmRefused ? `, ${r.warmRefused} refused in warm-up` : ''}; machine ${(r.machineBusy * 100).toFixed(0)} % busy`
  return [
    {
      name: `relay: delivered, end to end (${run.connections} STARTTLS+AUTH clients, ${MEMBERS} members)`,
      value: rate(relay),
      unit: 'messages/s',
      ...ref(rate),
      target: { op: '>=', value: 3, of: 'ratio' },
      note: `relay: ${runNote(relay)}${run.states?.deferred ? `; ${run.states.deferred} deferrals` : ''}${run.states?.bounced ? `; ${run.states.bounced} bounces` : ''}${run.warnings ? `; ${run.warnings} warnings` : ''}.${postfix ? ` Postfix: ${runNote(postfix)}` : ''}`,
    },
    {
      name: 'relay: CPU a message delivered (the MTA and its store)',
      value: msPerMessage(total(relay), relay),
      unit: 'ms',
      ...ref((r) => msPerMessage(total(r), r)),
      target: { op: '<=', value: 0.25, of: 'ratio' },
      note: `relay: ${parts(relay)}${postfix ? `; Postfix: ${parts(postfix)}` : ''}; clients and sink ${msPerMessage(relay.benchCpu, relay).toFixed(2)}${postfix ? ` / ${msPerMessage(postfix.benchCpu, postfix).toFixed(2)}` : ''} ms`,
    },
    {
      name: 'relay: accepted (submission)',
      value: relay.accepted / relay.acceptedSeconds,
      unit: 'messages/s',
      ...ref((r) => r.accepted / r.acceptedSeconds),
    },
    {
      name: 'relay: submission latency p99 (client, per message)',
      value: relay.p99,
      unit: 'ms',
      ...ref((r) => r.p99),
      note: `p50 ${relay.p50.toFixed(1)} ms${postfix ? `, Postfix ${postfix.p50.toFixed(1)} ms` : ''}`,
    },
    {
      name: 'relay: delivered, against the raw signing rate',
      value: rate(relay),
      unit: 'messages/s',
      reference: { name: '2 × RSA-2048 signatures a message, node:crypto, one thread', value: run.raw },
      target: { op: '>=', value: 0.35, of: 'ratio' },
    },
    {
      name: 'relay: KumoMTA’s published 2-CPU figure (not measured here)',
      value: rate(relay),
      unit: 'messages/s',
      reference: { name: 'KumoMTA, 2.7 M messages/hour on 2 CPUs, published', value: KUMO_PER_SECOND },
    },
  ]
}
