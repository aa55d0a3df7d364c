import { generateKeyPairSync, sign } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
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
import { createTransport, type Transporter } from 'nodemailer'
import { type Figure, percentile } from './report.ts'

const RELAY = new URL('../../services/relay/src/index.ts', import.meta.url)

/** KumoMTA's published figure: 2.7 M messages an hour on 2 CPUs. */
const KUMO_PER_SECOND = 750
const MEMBERS = 5
const RECIPIENT_DOMAINS = 10
/** About 3 KB: a transactional notification with some text. */
const BODY = `${'This is a benchmark message from the Atmosphere Mail relay bench, line padded to 76.\r\n'.repeat(36)}`

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** CPU seconds used so far by every process of a name (Postgres runs one backend per connection). */
function cpuSecondsOf(comm: string): number {
  let total = 0
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm) total += cpuSeconds(Number(pid))
    } catch {
      // The process ended while we looked.
    }
  }
  return total
}

/** Busy and total CPU seconds of the whole machine so far (every core). */
function machineCpu(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
  const total = fields.reduce((a, b) => a + b, 0) / 100
  const idle = ((fields[3] ?? 0) + (fields[4] ?? 0)) / 100
  return { busy: total - idle, total }
}

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

type Member = { domain: string }

function rawMessage(member: Member, to: string, n: number): Buffer {
  return Buffer.from(
    [
      `From: Bench <sender@${member.domain}>`,
      `To: <${to}>`,
      `Subject: Your sign-in code ${n}`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: <bench-${n}-${Date.now()}@${member.domain}>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
      '',
      BODY,
    ].join('\r\n'),
  )
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
  const prefix = testRedisPrefix('bench-relay')
  // Accepts everything, STARTTLS offered as real MX hosts do; counts only, as a run holds too many to keep.
  const sink = new MxSink({ size: 10 * 1024 * 1024, keep: false })
  const dns = new TestDnsServer()
  const clients: Transporter[] = []
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
    for (const role of roles) {
      const opsPort = await closedPort()
      const relay = new ServiceProcess(RELAY, {
        ...env,
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
      await untilReady(relay, `http://127.0.0.1:${opsPort}/readyz`, 30_000)
    }
    for (let c = 0; c < connections; c++) {
      const member = members[c % members.length]!
      clients.push(
        createTransport({
          host: '127.0.0.1',
          port,
          secure: false,
          requireTLS: true,
          auth: { user: member.username, pass: member.password },
          tls: { rejectUnauthorized: false },
          pool: true,
          maxConnections: 1,
          maxMessages: Number.POSITIVE_INFINITY,
        }),
      )
    }
    let n = 0
    const latencies: number[] = []
    let refused = 0
    let firstRefusal = ''
    /** `total` messages from every client at once, each client sending one at a time. */
    const submit = (total: number, record: boolean) =>
      Promise.all(
        clients.map(async (client, c) => {
          const member = members[c % members.length]!
          for (;;) {
            const i = n++
            if (i >= total) return
            const to = `user${i}@r${i % RECIPIENT_DOMAINS}.bench.example`
            const t0 = performance.now()
            try {
              await client.sendMail({
                envelope: { from: `sender@${member.domain}`, to: [to] },
                raw: rawMessage(member, to, i),
              })
              if (record) latencies.push(performance.now() - t0)
            } catch (err) {
              refused++
              firstRefusal ||= (err as Error).message
            }
          }
        }),
      )

    // Warm-up: every connection logs in (one scrypt each), V8 optimises the hot paths and every
    // Postgres connection has prepared the statements; 20 messages a connection get there.
    const warm = connections * 20
    await submit(warm, false)
    n = 0
    if (!(await sink.reach(warm - refused, 60_000))) throw new Error(`warm-up: sink got ${sink.count}/${warm}`)
    const warmRefused = refused
    refused = 0
    const base = sink.count

    const relayCpuSeconds = () => relays.map((r) => cpuSeconds(r.child.pid!))
    const cpu0 = relayCpuSeconds()
    const pg0 = cpuSecondsOf('postgres')
    const self0 = process.cpuUsage()
    const machine0 = machineCpu()
    const t0 = performance.now()
    await submit(messages, true)
    const acceptedSeconds = (performance.now() - t0) / 1000
    const accepted = messages - refused
    const all = await sink.reach(base + accepted, 300_000)
    const deliveredSeconds = (performance.now() - t0) / 1000
    const delivered = sink.count - base
    const cpuEach = relayCpuSeconds().map((c, i) => c - (cpu0[i] ?? 0))
    const relayCpu = cpuEach.reduce((a, b) => a + b, 0)
    const pgCpu = cpuSecondsOf('postgres') - pg0
    const selfUsage = process.cpuUsage(self0)
    const benchCpu = (selfUsage.user + selfUsage.system) / 1e6
    const machine1 = machineCpu()
    const machineBusy = (machine1.busy - machine0.busy) / (machine1.total - machine0.total)

    latencies.sort((a, b) => a - b)
    const deliveredRate = delivered / deliveredSeconds
    const warnings = relays
      .flatMap((r) => r.logs)
      .filter((l) => l.level === 'warn' || l.level === 'error' || Number(l.level) >= 40)
    const [states] = await sql<{ deferred: number; bounced: number }[]>`
      select count(*) filter (where outcome = 'deferred')::int as deferred,
             count(*) filter (where outcome = 'failed')::int as bounced
      from delivery_attempts`
    return [
      {
        name: `accepted, ${connections} connections, ${MEMBERS} members`,
        value: accepted / acceptedSeconds,
        unit: 'messages/s',
        note: `${accepted} of ${messages} in ${acceptedSeconds.toFixed(1)} s${refused ? `, ${refused} refused: ${firstRefusal.slice(0, 120)}` : ''}${warmRefused ? `, ${warmRefused} refused in warm-up` : ''}`,
      },
      {
        name: 'delivered to the sink (end to end, clients and sink on the same cores)',
        value: deliveredRate,
        unit: 'messages/s',
        target: { op: '>=', value: KUMO_PER_SECOND },
        note: `${delivered} in ${deliveredSeconds.toFixed(1)} s from the first submission${all ? '' : ', TIMED OUT'}${states?.deferred ? `; ${states.deferred} deferrals` : ''}${states?.bounced ? `; ${states.bounced} bounces` : ''}${warnings.length ? `; ${warnings.length} warnings, first: ${String(warnings[0]?.msg)}` : ''}`,
      },
      {
        name: 'relay CPU per message delivered',
        value: (relayCpu / Math.max(1, delivered)) * 1000,
        unit: 'ms',
        note: `${(relayCpu / deliveredSeconds).toFixed(2)} cores busy${relays.length > 1 ? ` (${roles.map((r, i) => `${r} ${(((cpuEach[i] ?? 0) / Math.max(1, delivered)) * 1000).toFixed(2)} ms`).join(', ')})` : ''}; Postgres ${((pgCpu / Math.max(1, delivered)) * 1000).toFixed(2)} ms, clients and sink ${((benchCpu / Math.max(1, delivered)) * 1000).toFixed(2)} ms a message; machine ${(machineBusy * 100).toFixed(0)} % busy`,
      },
      {
        // The clients and the sink take a good share of this machine's cores, which an MTA
        // benchmark such as KumoMTA's runs elsewhere: this is what two CPUs given to the
        // relay and its Postgres alone would carry at the CPU cost measured in this run.
        name: 'two CPUs at the relay’s and Postgres’ cost per message',
        value: 2 / ((relayCpu + pgCpu) / Math.max(1, delivered)),
        unit: 'messages/s',
        target: { op: '>=', value: KUMO_PER_SECOND },
        note: `2 s of CPU ÷ ${(((relayCpu + pgCpu) / Math.max(1, delivered)) * 1000).toFixed(2)} ms a message`,
      },
      { name: 'submission latency p50 (client, per message)', value: percentile(latencies, 50), unit: 'ms' },
      { name: 'submission latency p99 (client, per message)', value: percentile(latencies, 99), unit: 'ms' },
      {
        name: 'raw signing rate (2 × RSA-2048 a message)',
        value: raw,
        unit: 'messages/s',
        note: 'node:crypto, one thread, this machine',
      },
      {
        name: 'delivered / raw signing rate',
        value: deliveredRate / raw,
        unit: 'ratio',
        note: 'share of one core’s signing ceiling the relay reaches end to end',
      },
      {
        name: 'reference: KumoMTA on 2 CPUs',
        value: KUMO_PER_SECOND,
        unit: 'messages/s',
        note: '2.7 M messages/hour, published',
      },
    ]
  } finally {
    await Promise.all(clients.map((c) => c.close()))
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
