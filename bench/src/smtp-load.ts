// The load both MTAs of the relay bench get: the same nodemailer clients (STARTTLS + AUTH,
// one connection each, one message at a time), the same messages to the same recipient
// domains, delivered to the same loopback sink, measured the same way. Only the server differs.

import { readdirSync, readFileSync } from 'node:fs'
import type { MxSink } from '@atmos/testkit'
import { createTransport, type Transporter } from 'nodemailer'
import { percentile } from './report.ts'

export const RECIPIENT_DOMAINS = 10
/** About 3 KB: a transactional notification with some text. */
export const BODY = `${'This is a benchmark message from the Atmosphere Mail relay bench, line padded to 76.\r\n'.repeat(36)}`

export type Sender = { username: string; password: string; domain: string }

export type LoadResult = {
  messages: number
  accepted: number
  refused: number
  firstRefusal: string
  warmRefused: number
  acceptedSeconds: number
  delivered: number
  deliveredSeconds: number
  timedOut: boolean
  /** Per-message submission latency, ms. */
  p50: number
  p99: number
  /** CPU seconds over the measured run: the server's, each named part, and the bench's own (clients, sink). */
  serverCpu: Record<string, number>
  benchCpu: number
  /** Share of the whole machine busy during the run. */
  machineBusy: number
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/**
 * CPU seconds used so far by the Postgres backends serving one database: the server is
 * shared with whatever else runs on the machine, whose backends must not count. A backend's
 * title (its cmdline) names its user and database. The WAL writer and checkpointer serve
 * every database and are left out; under synchronous commit a backend flushes its own WAL.
 */
export function postgresCpuSeconds(database: string): number {
  let total = 0
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'postgres') continue
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(` ${database} `)) continue
      total += cpuSeconds(Number(pid))
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

export function rawMessage(domain: string, to: string, n: number): Buffer {
  return Buffer.from(
    [
      `From: Bench <sender@${domain}>`,
      `To: <${to}>`,
      `Subject: Your sign-in code ${n}`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: <bench-${n}-${Date.now()}@${domain}>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
      '',
      BODY,
    ].join('\r\n'),
  )
}

/**
 * `messages` messages from `connections` clients to the server on `port`, after a warm-up
 * (every client logs in, the server's hot paths settle), waiting until the sink has every
 * accepted one. `serverCpu` reads the server's CPU seconds so far, by part.
 */
export async function driveSmtp(opts: {
  port: number
  senders: Sender[]
  messages: number
  connections: number
  sink: MxSink
  serverCpu: () => Record<string, number>
  deliveryTimeoutMs?: number
}): Promise<LoadResult> {
  const { sink, senders, connections } = opts
  const clients: Transporter[] = []
  try {
    for (let c = 0; c < connections; c++) {
      const sender = senders[c % senders.length]!
      clients.push(
        createTransport({
          host: '127.0.0.1',
          port: opts.port,
          secure: false,
          requireTLS: true,
          auth: { user: sender.username, pass: sender.password },
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
          const { domain } = senders[c % senders.length]!
          for (;;) {
            const i = n++
            if (i >= total) return
            const to = `user${i}@r${i % RECIPIENT_DOMAINS}.bench.example`
            const t0 = performance.now()
            try {
              await client.sendMail({
                envelope: { from: `sender@${domain}`, to: [to] },
                raw: rawMessage(domain, to, i),
              })
              if (record) latencies.push(performance.now() - t0)
            } catch (err) {
              refused++
              firstRefusal ||= (err as Error).message
            }
          }
        }),
      )

    // Warm-up: every connection logs in, JITs and statement caches settle; 20 messages a connection get there.
    const base0 = sink.count
    const warm = connections * 20
    await submit(warm, false)
    n = 0
    if (!(await sink.reach(base0 + warm - refused, 120_000)))
      throw new Error(`warm-up: sink got ${sink.count - base0}/${warm}`)
    const warmRefused = refused
    refused = 0
    const base = sink.count

    const cpu0 = opts.serverCpu()
    const self0 = process.cpuUsage()
    const machine0 = machineCpu()
    const t0 = performance.now()
    await submit(opts.messages, true)
    const acceptedSeconds = (performance.now() - t0) / 1000
    const accepted = opts.messages - refused
    const all = await sink.reach(base + accepted, opts.deliveryTimeoutMs ?? 300_000)
    const deliveredSeconds = (performance.now() - t0) / 1000
    const delivered = sink.count - base
    const cpu1 = opts.serverCpu()
    const serverCpu = Object.fromEntries(Object.entries(cpu1).map(([k, v]) => [k, v - (cpu0[k] ?? 0)]))
    const selfUsage = process.cpuUsage(self0)
    const machine1 = machineCpu()
    latencies.sort((a, b) => a - b)
    return {
      messages: opts.messages,
      accepted,
      refused,
      firstRefusal,
      warmRefused,
      acceptedSeconds,
      delivered,
      deliveredSeconds,
      timedOut: !all,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      serverCpu,
      benchCpu: (selfUsage.user + selfUsage.system) / 1e6,
      machineBusy: (machine1.busy - machine0.busy) / (machine1.total - machine0.total),
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()))
  }
}

/** CPU milliseconds a delivered message cost, from a run's CPU seconds. */
export function msPerMessage(seconds: number, r: LoadResult): number {
  return (seconds / Math.max(1, r.delivered)) * 1000
}
