import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { type SignedLabel, verifyLabel } from '@atmos/labels'
import {
  createTestDatabase,
  goodMailZone,
  JetstreamServer,
  PlcDirectoryServer,
  ServiceProcess,
  type TestDatabase,
  TestDnsServer,
} from '@atmos/testkit'
import postgres from 'postgres'
import { ATTESTATION, attestationRecord, eventually, LabelSubscriber, labelerEnv, queryLabels } from './helpers.ts'

const entry = new URL('../src/index.ts', import.meta.url)
const dids = Array.from({ length: 12 }, (_, i) => `did:plc:restart${String(i).padStart(2, '0')}xyoun6zhxrhs6`)
const domainOf = (i: number) => `member${i}.example`

let tdb: TestDatabase
let dns: TestDnsServer
let plc: PlcDirectoryServer
let jetstream: JetstreamServer
const procs: ServiceProcess[] = []

before(async () => {
  tdb = await createTestDatabase()
  dns = new TestDnsServer(Object.assign({}, ...dids.map((did, i) => goodMailZone(domainOf(i), did))))
  await dns.start()
  plc = await new PlcDirectoryServer().start()
  jetstream = await new JetstreamServer().start()
})
after(async () => {
  for (const p of procs) await p.stop('SIGKILL')
  await jetstream?.close()
  await plc?.close()
  await dns?.close()
  await tdb?.drop()
})

async function startLabeler(env: Record<string, string>) {
  const proc = new ServiceProcess(entry, env)
  procs.push(proc)
  const line = await proc.waitForLog((l) => l.msg === 'xrpc endpoint listening')
  return { proc, xrpc: String(line.xrpc) }
}

/** The seq of every stored label, by (uri, val): a label emitted again would have moved. */
async function queryLabelsFromDb(): Promise<Map<string, number>> {
  const sql = postgres(tdb.url, { max: 1 })
  try {
    const rows = await sql<{ uri: string; val: string; seq: string }[]>`select uri, val, seq::text from labels`
    return new Map(rows.map((r) => [`${r.uri}|${r.val}`, Number(r.seq)]))
  } finally {
    await sql.end()
  }
}

it('a labeler killed mid-stream misses no event and labels none twice after restart', async () => {
  const { env, didKey } = await labelerEnv({
    databaseUrl: tdb.url,
    jetstreamUrl: jetstream.url,
    dnsPort: dns.port,
    plcUrl: plc.url,
  })
  env.ATMOS_LOG_LEVEL = 'info'
  const first = await startLabeler(env)
  await eventually(async () => (jetstream.clientCount ? true : undefined), 10_000, 'jetstream connection')

  // A burst of attestations; the process is killed as soon as a few are labelled.
  for (const [i, did] of dids.slice(0, 8).entries()) {
    jetstream.commit(did, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: domainOf(i),
      cid: `bafy${i}`,
      record: attestationRecord(domainOf(i)),
    })
  }
  await eventually(async () => ((await queryLabels(first.xrpc, 'did:plc:restart*')).length >= 3 ? true : undefined))
  const killed = await first.proc.stop('SIGKILL')
  assert.equal(killed.signal, 'SIGKILL')
  const before = await queryLabelsFromDb()

  // While it is down: more attestations, and a deletion.
  for (const [j, did] of dids.slice(8).entries()) {
    const i = j + 8
    jetstream.commit(did, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: domainOf(i),
      cid: `bafy${i}`,
      record: attestationRecord(domainOf(i)),
    })
  }
  jetstream.commit(dids[0]!, { operation: 'delete', collection: ATTESTATION, rkey: domainOf(0) })

  const second = await startLabeler(env)
  const labels = await eventually(
    async () => {
      const l = await queryLabels(second.xrpc, 'did:plc:restart*')
      const negated = l.find((x) => x.uri === dids[0] && x.neg)
      return l.length === dids.length && negated ? l : undefined
    },
    60_000,
    'a label for every attestation and the deletion negated',
  ).catch(async (err) => {
    const l = await queryLabels(second.xrpc, 'did:plc:restart*')
    throw new Error(
      `${err.message}: have ${JSON.stringify(l.map((x) => [x.uri.slice(-20), x.val, x.neg]))}\n${second.proc.dump().slice(-3000)}`,
    )
  })
  // Labels that were published before the kill were not published again.
  for (const [key, seq] of before) {
    if (key.startsWith(`${dids[0]}|`)) continue
    const now = await queryLabelsFromDb()
    assert.equal(now.get(key), seq, `${key} was emitted again after the restart`)
  }
  assert.equal(labels.filter((l) => !l.neg).length, dids.length - 1)

  // Replay from cursor 0: every label exactly once, in order, each signature valid.
  const replay = new LabelSubscriber(second.xrpc, 0)
  await replay.opened()
  const frames = await eventually(async () => {
    const l = replay.labels()
    return l.length >= dids.length ? l : undefined
  })
  await sleep(200)
  replay.close()
  assert.equal(replay.labels().length, dids.length)
  const seqs = frames.map((f) => f.seq)
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
  )
  assert.equal(new Set(frames.map((f) => `${f.label.uri}|${f.label.val}`)).size, frames.length)
  for (const f of frames) assert.equal(await verifyLabel(f.label as unknown as SignedLabel, didKey), true)

  // It resumed from its saved cursor, rewound a little, rather than from the start or live.
  const resumed = jetstream.connections.at(-1)!
  assert.ok(resumed.cursor !== undefined && resumed.cursor > 0, 'the second process resumed from a cursor')
  assert.equal((await second.proc.stop('SIGTERM')).code, 0)
})
