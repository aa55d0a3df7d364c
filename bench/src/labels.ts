import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSigningKeyFile, decodeFrame } from '@atmos/labels'
import { createTestDatabase, ServiceProcess, TEST_REDIS_URL, testRedisPrefix } from '@atmos/testkit'
import postgres from 'postgres'
import WebSocket from 'ws'
import { type Figure, percentile } from './report.ts'

const LABELER = new URL('../../services/labeler/src/index.ts', import.meta.url)

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024
}

/** queryLabels, subscribeLabels and idle subscribers against a labeler process holding `total` labels. */
export async function benchLabels(total: number): Promise<Figure[]> {
  const db = await createTestDatabase()
  const sql = postgres(db.url, { max: 4 })
  const figures: Figure[] = []
  const procs: ServiceProcess[] = []
  try {
    const keyFile = join(mkdtempSync(join(tmpdir(), 'atmos-bench-')), 'k.key')
    const didKey = (await createSigningKeyFile(keyFile)).did()
    const [key] = await sql`insert into label_signing_keys (did_key) values (${didKey}) returning id`
    const loadStart = Date.now()
    // Labels over 100 prefixes of subjects; signatures have the right size but are not
    // checked here (the tests verify them): the load is the serving itself.
    await sql`
      insert into labels (seq, src, uri, val, cts, sig, signing_key_id)
      select g, ${didKey},
             'did:plc:bench' || lpad((g % 100)::text, 2, '0') || lpad((g / 100 % 1000)::text, 3, '0') || (g % 10)::text,
             'val' || (g / 100000)::text, '2026-11-25T00:00:00.000Z', decode(repeat('ab', 64), 'hex'), ${key!.id}
      from generate_series(1, ${total}) g`
    await sql`select setval('label_seq', ${total})`
    await sql`analyze labels`
    figures.push({
      name: `labels stored (bulk load ${((Date.now() - loadStart) / 1000).toFixed(1)} s)`,
      value: total,
      unit: 'labels',
    })

    const start = async (extra: Record<string, string>) => {
      const proc = new ServiceProcess(LABELER, {
        ATMOS_DATABASE_URL: db.url,
        ATMOS_REDIS_URL: TEST_REDIS_URL,
        ATMOS_REDIS_PREFIX: testRedisPrefix('bench'),
        ATMOS_HTTP_PORT: '0',
        ATMOS_LOG_LEVEL: 'info',
        ATMOS_LABELER_SIGNING_KEY_FILE: keyFile,
        ATMOS_LABELER_XRPC_PORT: '0',
        ATMOS_LABELER_INGEST_SOURCE: 'none',
        ...extra,
      })
      procs.push(proc)
      const line = await proc.waitForLog((l) => l.msg === 'xrpc endpoint listening', 30_000)
      return { proc, xrpc: String(line.xrpc) }
    }

    // Without the page cache: what each request costs when it goes to Postgres.
    const cold = await start({ ATMOS_LABELER_QUERY_CACHE_BYTES: '0' })
    await loadQueryLabels(cold.xrpc, 2)
    const coldRun = await loadQueryLabels(cold.xrpc, 5)
    await cold.proc.stop('SIGTERM')

    const { proc, xrpc } = await start({})
    const wsBase = xrpc.replace(/^http/, 'ws')

    // 1 000 idle subscribers on a fresh process: what they cost it.
    const before = rssMb(proc.child.pid!)
    const sockets: WebSocket[] = []
    for (let i = 0; i < 1000; i++) {
      const ws = new WebSocket(`${wsBase}/xrpc/com.atproto.label.subscribeLabels`)
      sockets.push(ws)
      await new Promise((r) => ws.once('open', r))
    }
    await new Promise((r) => setTimeout(r, 2000))
    const after = rssMb(proc.child.pid!)
    for (const ws of sockets) ws.terminate()

    // A short warm-up first (JIT, connection pool, first pages), as any load test does.
    await loadQueryLabels(xrpc, 3)
    const run = await loadQueryLabels(xrpc, 10)
    figures.push(
      {
        name: 'queryLabels limit=250, prefix, 8 connections',
        value: run.rps,
        unit: 'req/s',
        target: { op: '>=', value: 1000 },
        note: `${run.client}, page cache on${run.errors ? `, ${run.errors} errors` : ''}`,
      },
      { name: 'queryLabels p50 latency', value: run.p50, unit: 'ms' },
      { name: 'queryLabels p99 latency', value: run.p99, unit: 'ms', target: { op: '<=', value: 50 } },
      {
        name: 'queryLabels with the page cache off',
        value: coldRun.rps,
        unit: 'req/s',
        note: `p99 ${coldRun.p99.toFixed(1)} ms`,
      },
      {
        name: '1 000 idle subscribers: server memory added',
        value: after - before,
        unit: 'MB',
        target: { op: '<=', value: 200 },
        note: `RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`,
      },
    )

    // Replay from cursor 0, on a process of its own as each figure here is. The client
    // counts every frame and decodes one in a hundred, as a relay forwarding the stream
    // would: decoding them all measures the client.
    await proc.stop('SIGTERM')
    const replayer = await start({})
    const replay = await new Promise<{ count: number; seconds: number }>((resolve, reject) => {
      const ws = new WebSocket(
        `${replayer.xrpc.replace(/^http/, 'ws')}/xrpc/com.atproto.label.subscribeLabels?cursor=0`,
      )
      let count = 0
      const t0 = performance.now()
      const finish = () => {
        ws.close()
        resolve({ count, seconds: (performance.now() - t0) / 1000 })
      }
      ws.on('message', (data: Buffer) => {
        if (count % 100 === 0 && decodeFrame(new Uint8Array(data)).header.op !== 1) reject(new Error('error frame'))
        if (++count === total) finish()
      })
      ws.on('error', reject)
      setTimeout(finish, 120_000)
    })
    figures.push({
      name: 'subscribeLabels replay from cursor 0',
      value: replay.count / replay.seconds,
      unit: 'labels/s',
      target: { op: '>=', value: 50_000 },
      note: `${replay.count} labels in ${replay.seconds.toFixed(1)} s`,
    })
  } finally {
    for (const p of procs) await p.stop('SIGTERM')
    await sql.end()
    await db.drop()
  }
  return figures
}

type LoadResult = { rps: number; p50: number; p99: number; errors: number; client: string }

const WRK_SCRIPT = `counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/xrpc/com.atproto.label.queryLabels?uriPatterns=did:plc:bench" .. string.format("%02d", counter % 100) .. "*&limit=250")
end`

/**
 * 8 connections asking for 250 labels under a prefix. wrk (C, from Debian) is the client
 * when installed, so that the client takes little of the two cores; otherwise 8 fetch
 * loops in this process.
 */
async function loadQueryLabels(xrpc: string, seconds: number): Promise<LoadResult> {
  if (spawnSync('which', ['wrk']).status === 0) {
    const script = join(mkdtempSync(join(tmpdir(), 'atmos-wrk-')), 'q.lua')
    writeFileSync(script, WRK_SCRIPT)
    const out = spawnSync('wrk', ['-t2', '-c8', `-d${seconds}s`, '--latency', '-s', script, xrpc], {
      encoding: 'utf8',
    }).stdout
    const ms = (pct: string) => {
      const m = new RegExp(`\\s${pct}%\\s+([\\d.]+)(us|ms|s)`).exec(out)
      if (!m) return Number.NaN
      const v = Number(m[1])
      return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v
    }
    return {
      rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
      p50: ms('50'),
      p99: ms('99'),
      errors: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
      client: 'wrk',
    }
  }
  const latencies: number[] = []
  const deadline = Date.now() + seconds * 1000
  let errors = 0
  await Promise.all(
    Array.from({ length: 8 }, async (_, worker) => {
      let i = worker
      while (Date.now() < deadline) {
        const prefix = String(i++ % 100).padStart(2, '0')
        const t0 = performance.now()
        const res = await fetch(
          `${xrpc}/xrpc/com.atproto.label.queryLabels?uriPatterns=did:plc:bench${prefix}*&limit=250`,
        )
        const body = (await res.json()) as { labels: unknown[] }
        if (res.status !== 200 || body.labels.length !== 250) errors++
        latencies.push(performance.now() - t0)
      }
    }),
  )
  latencies.sort((a, b) => a - b)
  return {
    rps: latencies.length / seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors,
    client: 'node fetch (install wrk for a lighter client)',
  }
}
