import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSigningKeyFile, decodeFrame } from '@atmos/labels'
import { createTestDatabase, ServiceProcess, TEST_REDIS_URL, testRedisPrefix } from '@atmos/testkit'
import postgres from 'postgres'
import WebSocket from 'ws'
import { type Figure, percentile } from './report.ts'

const LABELER = new URL('../../services/labeler/src/index.ts', import.meta.url)
void spawn

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN)
  return kb / 1024
}

/** queryLabels and subscribeLabels against a labeler process holding `total` labels. */
export async function benchLabels(total: number): Promise<Figure[]> {
  const db = await createTestDatabase()
  const sql = postgres(db.url, { max: 4 })
  const figures: Figure[] = []
  let proc: ServiceProcess | undefined
  try {
    const keyFile = join(mkdtempSync(join(tmpdir(), 'atmos-bench-')), 'k.key')
    const didKey = (await createSigningKeyFile(keyFile)).did()
    const [key] = await sql`insert into label_signing_keys (did_key) values (${didKey}) returning id`
    const started = Date.now()
    // 1 M labels over 100 000 subjects under 100 prefixes; signatures are the right size
    // but not checked here (the tests verify them), so the load is the serving itself.
    await sql`
      insert into labels (seq, src, uri, val, cts, sig, signing_key_id)
      select g, ${didKey}, 'did:plc:bench' || lpad((g % 100)::text, 2, '0') || lpad((g / 100 % 1000)::text, 3, '0') || lpad((g % 10)::text, 1, '0'),
             'val' || (g / 100000)::text, '2026-11-25T00:00:00.000Z', decode(repeat('ab', 64), 'hex'), ${key!.id}
      from generate_series(1, ${total}) g`
    await sql`select setval('label_seq', ${total})`
    await sql`analyze labels`
    const loadSeconds = (Date.now() - started) / 1000

    proc = new ServiceProcess(LABELER, {
      ATMOS_DATABASE_URL: db.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: testRedisPrefix('bench'),
      ATMOS_HTTP_PORT: '0',
      ATMOS_LOG_LEVEL: 'info',
      ATMOS_LABELER_SIGNING_KEY_FILE: keyFile,
      ATMOS_LABELER_XRPC_PORT: '0',
      ATMOS_LABELER_INGEST_SOURCE: 'none',
      ATMOS_LABELER_SUBSCRIBE_MAX_BUFFER: '10000',
    })
    const line = await proc.waitForLog((l) => l.msg === 'xrpc endpoint listening', 30_000)
    const xrpc = String(line.xrpc)

    // queryLabels: 8 connections, limit 250, a prefix pattern, for 10 seconds.
    const latencies: number[] = []
    const deadline = Date.now() + 10_000
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
    figures.push(
      { name: `labels stored (bulk load ${loadSeconds.toFixed(1)} s)`, value: total, unit: 'labels' },
      {
        name: 'queryLabels limit=250, prefix, 8 connections',
        value: latencies.length / 10,
        unit: 'req/s',
        target: { op: '>=', value: 1000 },
        note: errors ? `${errors} errors` : undefined,
      },
      { name: 'queryLabels p50 latency', value: percentile(latencies, 50), unit: 'ms' },
      {
        name: 'queryLabels p99 latency',
        value: percentile(latencies, 99),
        unit: 'ms',
        target: { op: '<=', value: 50 },
      },
    )

    // subscribeLabels replay from cursor 0, decoding every frame on the client.
    const replay = await new Promise<{ count: number; seconds: number }>((resolve, reject) => {
      const ws = new WebSocket(`${xrpc.replace('http', 'ws')}/xrpc/com.atproto.label.subscribeLabels?cursor=0`)
      let count = 0
      const t0 = performance.now()
      ws.on('message', (data: Buffer) => {
        decodeFrame(new Uint8Array(data))
        if (++count === total) {
          ws.close()
          resolve({ count, seconds: (performance.now() - t0) / 1000 })
        }
      })
      ws.on('error', reject)
      setTimeout(() => {
        ws.close()
        resolve({ count, seconds: (performance.now() - t0) / 1000 })
      }, 60_000)
    })
    figures.push({
      name: 'subscribeLabels replay from cursor 0',
      value: replay.count / replay.seconds,
      unit: 'labels/s',
      target: { op: '>=', value: 50_000 },
      note: `${replay.count} labels in ${replay.seconds.toFixed(1)} s`,
    })

    // 1 000 idle subscribers: what they cost the server process.
    const pid = proc.child.pid!
    const before = rssMb(pid)
    const sockets: WebSocket[] = []
    for (let i = 0; i < 1000; i++) {
      const ws = new WebSocket(`${xrpc.replace('http', 'ws')}/xrpc/com.atproto.label.subscribeLabels`)
      sockets.push(ws)
      await new Promise((r) => ws.once('open', r))
    }
    await new Promise((r) => setTimeout(r, 2000))
    const after = rssMb(pid)
    figures.push({
      name: '1 000 idle subscribers: server memory added',
      value: after - before,
      unit: 'MB',
      target: { op: '<=', value: 200 },
      note: `RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`,
    })
    for (const ws of sockets) ws.terminate()
  } finally {
    await proc?.stop('SIGTERM')
    await sql.end()
    await db.drop()
  }
  return figures
}
