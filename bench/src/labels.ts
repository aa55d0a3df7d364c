import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createDb } from '@atmos/db'
import { createSigningKeyFile, labelWireCbor, loadSigningKeyFile } from '@atmos/labels'
import { createTestDatabase, ServiceProcess, TEST_REDIS_URL, testRedisPrefix } from '@atmos/testkit'
import postgres from 'postgres'
import WebSocket from 'ws'
import { LabelWriter } from '../../services/labeler/src/labels/writer.ts'
import { countFrames } from './frame-counter.ts'
import { BENCH_LABEL_SQL, benchLabel, CTS, churnUri, SIG } from './label-data.ts'
import { type Figure, progress } from './report.ts'

const LABELER = new URL('../../services/labeler/src/index.ts', import.meta.url)
const SKYWARE = fileURLToPath(new URL('./skyware-child.ts', import.meta.url))
const SKYWARE_NAME = '@skyware/labeler 0.2.0'
/** Seconds of each load run; every figure is the best of ROUNDS runs, the two labelers taking turns. */
const SECONDS = 5
const ROUNDS = 2

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024
}

/** The skyware labeler's SQLite file, filled with the same labels (its own schema). */
async function skywareDatabase(total: number): Promise<string> {
  const path = join(mkdtempSync(join(tmpdir(), 'atmos-skyware-')), 'labels.db')
  // node:sqlite (built into Node) writes the file; skyware opens it with libsql, the same format.
  const { DatabaseSync } = await import('node:sqlite')
  const db = new DatabaseSync(path)
  db.exec('PRAGMA journal_mode = WAL')
  db.exec(`CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT, src TEXT NOT NULL, uri TEXT NOT NULL, cid TEXT,
    val TEXT NOT NULL, neg BOOLEAN DEFAULT FALSE, cts DATETIME NOT NULL, exp DATETIME, sig BLOB)`)
  const insert = db.prepare('INSERT INTO labels (id, src, uri, val, neg, cts, sig) VALUES (?, ?, ?, ?, ?, ?, ?)')
  db.exec('BEGIN')
  for (let g = 1; g <= total; g++) {
    const l = benchLabel(g)
    insert.run(g, 'did:plc:skywarebench', l.uri, l.val, l.neg ? 1 : 0, CTS, SIG)
  }
  db.exec('COMMIT')
  db.close()
  return path
}

type Skyware = { url: string; child: ChildProcess; stop: () => Promise<void> }

async function startSkyware(dbPath: string): Promise<Skyware> {
  const child = spawn(
    process.execPath,
    [SKYWARE, dbPath, 'did:plc:skywarebench', SIG.subarray(0, 32).toString('hex')],
    {
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    },
  )
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.once('data', (d) => resolve(JSON.parse(String(d)).url))
    child.once('exit', (code) => reject(new Error(`skyware labeler exited ${code}`)))
  })
  return {
    url,
    child,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
      }),
  }
}

/** Both labelers' churn: a label every 100 ms, each through its own writing path. */
function ourChurn(writer: LabelWriter): { stop: () => Promise<number> } {
  let n = 0
  let busy: Promise<unknown> | undefined
  const timer = setInterval(() => {
    if (busy) return
    const uri = churnUri(n)
    busy = writer
      .emit([{ uri, val: 'val0', neg: n % 2 === 1, reason: 'bench churn' }])
      .then(() => n++)
      .finally(() => {
        busy = undefined
      })
  }, 100)
  return {
    stop: async () => {
      clearInterval(timer)
      await busy
      return n
    },
  }
}

function skywareChurn(sky: Skyware): { stop: () => Promise<number> } {
  sky.child.send('churn')
  return {
    stop: () =>
      new Promise((resolve) => {
        sky.child.once('message', (m: { added: number }) => resolve(m.added))
        sky.child.send('stop-churn')
      }),
  }
}

/** A text's DAG-CBOR in SQL: head then UTF-8, for texts under 256 bytes (all the bench's are). */
const cborText = (col: string) =>
  `(case when octet_length(${col}) < 24 then set_byte('\\x00'::bytea, 0, 96 + octet_length(${col}))
     else set_byte(set_byte('\\x0000'::bytea, 0, 120), 1, octet_length(${col})) end || convert_to(${col}, 'UTF8'))`

/**
 * labelWireCbor in SQL for the bench's labels (no cid or exp, a 64-byte sig): the map's
 * keys in DAG-CBOR order (cts, neg, sig, src, uri, val, ver), each key a 3-byte text.
 */
const LABEL_CBOR_SQL = `(case when neg then '\\xa7'::bytea else '\\xa6'::bytea end
  || '\\x63637473'::bytea || ${cborText('cts')}
  || case when neg then '\\x636e6567f5'::bytea else ''::bytea end
  || '\\x637369675840'::bytea || sig
  || '\\x63737263'::bytea || ${cborText('src')}
  || '\\x63757269'::bytea || ${cborText('uri')}
  || '\\x6376616c'::bytea || ${cborText('val')}
  || '\\x6376657201'::bytea)`

/** Every frame from cursor 0 until `total` arrived, read by the same client from either labeler. */
function replay(base: string, total: number): Promise<{ count: number; seconds: number }> {
  return countFrames(base, '/xrpc/com.atproto.label.subscribeLabels?cursor=0', total, 300_000)
}

/**
 * queryLabels and subscribeLabels replay against a labeler process holding `total` labels,
 * each beside @skyware/labeler serving the same labels from SQLite on the same machine in
 * the same run, driven by the same clients (wrk, a WebSocket reader).
 */
export async function benchLabels(total: number): Promise<Figure[]> {
  const db = await createTestDatabase()
  const sql = postgres(db.url, { max: 4, onnotice: () => {} })
  const figures: Figure[] = []
  const procs: ServiceProcess[] = []
  let sky: Skyware | undefined
  const writerDb = createDb({ url: db.url, poolMax: 2 })
  try {
    const keyFile = join(mkdtempSync(join(tmpdir(), 'atmos-bench-')), 'k.key')
    const didKey = (await createSigningKeyFile(keyFile)).did()
    const [key] = await sql`insert into label_signing_keys (did_key) values (${didKey}) returning id`
    const loadStart = Date.now()
    // wire_json and wire_cbor as the writer stores them (checked below against the writer's
    // own encoding; the labeler renders the same for rows without them).
    await sql.unsafe(
      `insert into labels (seq, src, uri, val, neg, cts, sig, signing_key_id, wire_json, wire_cbor)
       select seq, src, uri, val, neg, cts, sig, signing_key_id,
              json_strip_nulls(json_build_object('ver', 1, 'src', src, 'uri', uri, 'val', val,
                'neg', case when neg then true end, 'cts', cts,
                'sig', json_build_object('$bytes', rtrim(replace(encode(sig, 'base64'), E'\\n', ''), '='))))::text,
              ${LABEL_CBOR_SQL}
       from (select g as seq, $1::text as src, ${BENCH_LABEL_SQL.uri} as uri, ${BENCH_LABEL_SQL.val} as val,
                    ${BENCH_LABEL_SQL.neg} as neg, $2::text as cts, $3::bytea as sig, $4::bigint as signing_key_id
             from generate_series(1, $5::int) g) rows`,
      [didKey, CTS, SIG, key!.id, total],
    )
    await sql`select setval('label_seq', ${total})`
    // The first labels, negated ones among them, hold the SQL encoding to the writer's.
    const firstRows = await sql<
      Array<{
        seq: string
        src: string
        uri: string
        val: string
        neg: boolean
        cts: string
        sig: Buffer
        wire_cbor: Buffer
      }>
    >`
      select seq, src, uri, val, neg, cts, sig, wire_cbor from labels where seq <= 20`
    for (const row of firstRows) {
      const want = Buffer.from(labelWireCbor({ ...row, ver: 1 }))
      if (!row.wire_cbor.equals(want)) throw new Error(`bench wire_cbor of seq ${row.seq} is not the writer's`)
    }
    await sql`vacuum analyze labels`
    const skyPath = await skywareDatabase(total)
    progress(`labels: ${total} loaded into Postgres and SQLite in ${((Date.now() - loadStart) / 1000).toFixed(1)} s`)

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
      const line = await proc.waitForLog((l) => l.msg === 'xrpc endpoint listening', 60_000)
      return { proc, xrpc: String(line.xrpc) }
    }
    sky = await startSkyware(skyPath)
    const cold = await start({ ATMOS_LABELER_QUERY_CACHE_BYTES: '0' })
    const warm = await start({})

    // Replay first, on fresh processes and before any churn: both hold exactly `total`.
    const fastest = (runs: Array<{ count: number; seconds: number }>) =>
      runs.reduce((a, b) => (b.count / b.seconds > a.count / a.seconds ? b : a))
    const skyReplays = []
    const ourReplays = []
    for (let round = 0; round < ROUNDS; round++) {
      skyReplays.push(await replay(sky.url, total))
      ourReplays.push(await replay(warm.xrpc, total))
    }
    const skyReplay = fastest(skyReplays)
    const ourReplay = fastest(ourReplays)
    progress(
      `replay: ours ${ourReplay.count} in ${ourReplay.seconds.toFixed(1)} s, skyware ${skyReplay.count} in ${skyReplay.seconds.toFixed(1)} s`,
    )
    figures.push({
      name: 'subscribeLabels replay from cursor 0',
      value: ourReplay.count / ourReplay.seconds,
      unit: 'labels/s',
      reference: { name: SKYWARE_NAME, value: skyReplay.count / skyReplay.seconds },
      target: { op: '>=', value: 10, of: 'ratio' },
      note: `${total} labels, best of ${ROUNDS}; ours ${ourReplay.count} in ${ourReplay.seconds.toFixed(1)} s, skyware ${skyReplay.count} in ${skyReplay.seconds.toFixed(1)} s`,
    })

    // Same answer from both before timing them: a full page of 250 labels.
    for (const base of [sky.url, cold.xrpc, warm.xrpc]) {
      const page = (await (await fetch(`${base}${queryPath(7)}`)).json()) as { labels: unknown[] }
      if (page.labels.length !== 250) throw new Error(`${base} answered ${page.labels.length} labels, not 250`)
    }

    // Warm-up (JIT, connection pools, the first pages), then the turns.
    for (const base of [sky.url, cold.xrpc, warm.xrpc]) await wrk(base, 2)
    const best = (runs: LoadResult[]) => runs.reduce((a, b) => (b.rps > a.rps ? b : a))
    const skyRuns: LoadResult[] = []
    const coldRuns: LoadResult[] = []
    const warmRuns: LoadResult[] = []
    for (let round = 0; round < ROUNDS; round++) {
      skyRuns.push(await wrk(sky.url, SECONDS))
      coldRuns.push(await wrk(cold.xrpc, SECONDS))
      warmRuns.push(await wrk(warm.xrpc, SECONDS))
    }
    const skyQ = best(skyRuns)
    const coldQ = best(coldRuns)
    const warmQ = best(warmRuns)
    progress(`queryLabels: skyware ${skyQ.rps}, ours uncached ${coldQ.rps}, ours cached ${warmQ.rps} req/s`)

    // With a writer adding a label every 100 ms to each during the runs.
    const writer = new LabelWriter(writerDb, { keypair: await loadSigningKeyFile(keyFile), src: didKey })
    const ours = ourChurn(writer)
    const theirs = skywareChurn(sky)
    const skyChurnRuns: LoadResult[] = []
    const warmChurnRuns: LoadResult[] = []
    const coldChurnRuns: LoadResult[] = []
    for (let round = 0; round < ROUNDS; round++) {
      skyChurnRuns.push(await wrk(sky.url, SECONDS))
      warmChurnRuns.push(await wrk(warm.xrpc, SECONDS))
      coldChurnRuns.push(await wrk(cold.xrpc, SECONDS))
    }
    const ourChurned = await ours.stop()
    const skyChurned = await theirs.stop()
    const skyC = best(skyChurnRuns)
    const warmC = best(warmChurnRuns)
    const coldC = best(coldChurnRuns)
    const errors = (r: LoadResult) => (r.errors ? `, ${r.errors} errors` : '')
    const skyRef = (r: LoadResult) => ({ name: SKYWARE_NAME, value: r.rps })
    figures.push(
      {
        name: 'queryLabels limit=250, prefix, page cache on',
        value: warmQ.rps,
        unit: 'req/s',
        reference: skyRef(skyQ),
        target: { op: '>=', value: 5, of: 'ratio' },
        note: `wrk, 8 connections, best of ${ROUNDS} × ${SECONDS} s each; p99 ours ${warmQ.p99.toFixed(1)} ms, skyware ${skyQ.p99.toFixed(1)} ms${errors(warmQ)}`,
      },
      {
        name: 'queryLabels limit=250, prefix, page cache off',
        value: coldQ.rps,
        unit: 'req/s',
        reference: skyRef(skyQ),
        target: { op: '>=', value: 3, of: 'ratio' },
        note: `p99 ours ${coldQ.p99.toFixed(1)} ms${errors(coldQ)}`,
      },
      {
        name: 'queryLabels, cache on, a label every 100 ms',
        value: warmC.rps,
        unit: 'req/s',
        reference: skyRef(skyC),
        target: { op: '>=', value: 5, of: 'ratio' },
        note: `churn: ours wrote ${ourChurned}, skyware ${skyChurned} labels during the runs; p99 ours ${warmC.p99.toFixed(1)} ms, skyware ${skyC.p99.toFixed(1)} ms${errors(warmC)}`,
      },
      {
        name: 'queryLabels, cache off, a label every 100 ms',
        value: coldC.rps,
        unit: 'req/s',
        reference: skyRef(skyC),
        target: { op: '>=', value: 3, of: 'ratio' },
        note: `p99 ours ${coldC.p99.toFixed(1)} ms${errors(coldC)}`,
      },
      {
        name: 'queryLabels p99 latency, cache on',
        value: warmQ.p99,
        unit: 'ms',
        reference: { name: SKYWARE_NAME, value: skyQ.p99 },
        target: { op: '<=', value: 50 },
      },
    )

    // 1 000 idle subscribers on our cached process: what they cost it.
    const before = rssMb(warm.proc.child.pid!)
    const sockets: WebSocket[] = []
    for (let i = 0; i < 1000; i++) {
      const ws = new WebSocket(`${warm.xrpc.replace(/^http/, 'ws')}/xrpc/com.atproto.label.subscribeLabels`)
      sockets.push(ws)
      await new Promise((r) => ws.once('open', r))
    }
    // Memory the server allocates for a connection after its upgrade settles within
    // moments; measured as before this format existed, two seconds after the last opened.
    await new Promise((r) => setTimeout(r, 2000))
    const after = rssMb(warm.proc.child.pid!)
    for (const ws of sockets) ws.terminate()
    figures.push({
      name: '1 000 idle subscribers: server memory added',
      value: after - before,
      unit: 'MB',
      target: { op: '<=', value: 200 },
      note: `RSS ${before.toFixed(0)} → ${after.toFixed(0)} MB`,
    })
  } finally {
    for (const p of procs) await p.stop('SIGTERM')
    await sky?.stop()
    await writerDb.$client.end()
    await sql.end()
    await db.drop()
  }
  return figures
}

type LoadResult = { rps: number; p50: number; p99: number; errors: number }

const queryPath = (prefix: number) =>
  `/xrpc/com.atproto.label.queryLabels?uriPatterns=did:plc:bench${String(prefix).padStart(2, '0')}*&limit=250`

const WRK_SCRIPT = `counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/xrpc/com.atproto.label.queryLabels?uriPatterns=did:plc:bench" .. string.format("%02d", counter % 100) .. "*&limit=250")
end`

/** 8 connections asking for 250 labels under a prefix, the 100 prefixes in turn: wrk (C, from Debian). */
async function wrk(base: string, seconds: number): Promise<LoadResult> {
  if (spawnSync('which', ['wrk']).status !== 0) throw new Error('wrk is not installed (./scripts/bench.sh installs it)')
  const script = join(mkdtempSync(join(tmpdir(), 'atmos-wrk-')), 'q.lua')
  writeFileSync(script, WRK_SCRIPT)
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('wrk', ['-t2', '-c8', `-d${seconds}s`, '--latency', '-s', script, base], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let text = ''
    child.stdout.on('data', (d) => {
      text += d
    })
    child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}`))))
  })
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
  }
}
