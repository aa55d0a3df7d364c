import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { attestations, verificationRuns } from '@atmos/db'
import { type Job, TypedQueue, verifyAttestation } from '@atmos/queues'
import { goodMailZone, ManualClock } from '@atmos/testkit'
import { and, asc, eq } from 'drizzle-orm'
import { verifyJobId } from '../src/ingest/ingester.ts'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  queryLabels,
  startLabeler,
} from './helpers.ts'

const STRANGER = 'did:plc:strangerbigrecordaaaaaaa'
const NULLER = 'did:plc:nullernxzyoun6zhxrhs64oi'
const HOARDER = 'did:plc:hoardernxzyoun6zhxrhs64o'
const LOOPER = 'did:plc:loopernxzyoun6zhxrhs64oi'
const NETWORK_RUNS = 3
const ADMIN_RUNS = 2
const HOUR = 3_600_000

describe('labeler: strangers cannot grow its tables', () => {
  let h: LabelerHarness
  let clock: ManualClock
  let queue: TypedQueue<typeof verifyAttestation>

  before(async () => {
    // Time stands still for the verify worker, so the budget's window is the same one
    // throughout, until the test moves it on.
    clock = new ManualClock(Math.floor(Date.now() / HOUR) * HOUR + 60_000)
    h = await startLabeler(
      { ...goodMailZone('nul.example', NULLER), ...goodMailZone('loop.example', LOOPER) },
      {
        ATMOS_LABELER_VERIFY_NETWORK_RUNS_PER_WINDOW: String(NETWORK_RUNS),
        ATMOS_LABELER_VERIFY_ADMIN_RUNS_PER_WINDOW: String(ADMIN_RUNS),
      },
      { clock },
    )
    queue = new TypedQueue(verifyAttestation, h.service.ctx.redis, h.service.ctx.config.redis.prefix)
  })

  after(async () => {
    await queue?.close()
    await h?.close()
  })

  const db = () => h.service.ctx.db
  const rows = (did: string) =>
    db().select().from(attestations).where(eq(attestations.did, did)).orderBy(asc(attestations.id))
  const runs = (did: string) =>
    db().select().from(verificationRuns).where(eq(verificationRuns.did, did)).orderBy(asc(verificationRuns.id))
  const metrics = async () => (await fetch(`http://127.0.0.1:${h.service.ctx.ops.address!.port}/metrics`)).text()
  const refused = async () =>
    Number(
      /atmos_labeler_ingest_events_total\{kind="record",outcome="refused",service="labeler"\} (\d+)/.exec(
        await metrics(),
      )?.[1] ?? 0,
    )

  it('keeps of a rejected record its reason and the first 1 KiB of its JSON, marked truncated', async () => {
    h.jetstream.commit(STRANGER, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'self',
      cid: 'bafybig1',
      record: { $type: ATTESTATION, domain: 'x'.repeat(300), padding: 'é'.repeat(30_000), createdAt: 'now' },
    })
    const [row] = await eventually(async () => {
      const r = await rows(STRANGER)
      return r.length ? r : undefined
    })
    assert.equal(row!.state, 'rejected')
    assert.match(row!.rejectionReason ?? '', /Record\/domain must not be longer than 253 characters/)
    const kept = row!.record as { json: string; bytes: number; truncated: boolean }
    assert.equal(kept.truncated, true)
    assert.ok(kept.bytes > 60_000, `the record's full size is kept: ${kept.bytes}`)
    assert.ok(Buffer.byteLength(kept.json) <= 1024 && Buffer.byteLength(kept.json) > 1000)
    assert.ok(kept.json.startsWith(`{"$type":"${ATTESTATION}","domain":"xxx`))
    assert.ok(!kept.json.includes('\uFFFD'), 'cut between characters, never inside one')
    const [{ size }] = (await db()
      .$client`select pg_column_size(record) as size from attestations where did = ${STRANGER}`) as unknown as [
      { size: number },
    ]
    assert.ok(size < 2048, `the stored record takes ${size} bytes`)
  })

  it('a NUL in a record or its key never stalls ingest', async () => {
    h.jetstream.commit(NULLER, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'bad\u0000key',
      cid: 'bafynul0',
      record: attestationRecord('nul.example'),
    })
    h.jetstream.commit(NULLER, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'other',
      cid: 'bafynul1',
      record: { $type: ATTESTATION, domain: 'nul.example', note: 'a\u0000b' },
    })
    // A valid record with an extra field (lexicon objects are open) holding a NUL.
    h.jetstream.commit(NULLER, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'nul.example',
      cid: 'bafynul2',
      record: { ...attestationRecord('nul.example'), note: 'a\u0000b' },
    })
    const labels = await eventually(async () => {
      const l = await queryLabels(h.xrpc, NULLER)
      return l.length ? l : undefined
    })
    assert.deepEqual(
      labels.map((l) => l.val),
      ['verified-mail-operator'],
    )
    const stored = await rows(NULLER)
    assert.deepEqual(
      stored.map((r) => [r.rkey, r.state]),
      [
        ['other', 'rejected'],
        ['nul.example', 'valid'],
      ],
    )
    // Only the fields the lexicon defines are kept of a valid record.
    assert.deepEqual(Object.keys(stored[1]!.record as object).sort(), [
      'createdAt',
      'dkimSelectors',
      'domain',
      'relayMember',
    ])
  })

  it('one DID holds at most maxRecordsPerDid rows, whatever their keys and states', async () => {
    const before = await refused()
    const create = (rkey: string, cid: string) =>
      h.jetstream.commit(HOARDER, {
        operation: 'create',
        collection: ATTESTATION,
        rkey,
        cid,
        record: { $type: ATTESTATION, domain: `${rkey}.hoard.example` },
      })
    for (let i = 0; i < 15; i++) create(`k${i}`, `bafyk${i}`)
    // Deleting a row frees nothing: write-delete loops under fresh keys must not grow the table.
    h.jetstream.commit(HOARDER, { operation: 'delete', collection: ATTESTATION, rkey: 'k0' })
    h.jetstream.commit(HOARDER, { operation: 'create', collection: ATTESTATION, rkey: 'k15', cid: 'bafyk15' })
    h.jetstream.commit(HOARDER, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'hoard.example',
      cid: 'bafyself',
      record: attestationRecord('hoard.example'),
    })
    // A key the DID holds still applies.
    create('k3', 'bafyk3again')
    await eventually(async () => {
      const [k3] = (await rows(HOARDER)).filter((r) => r.rkey === 'k3')
      return k3?.cid === 'bafyk3again' ? true : undefined
    })
    const held = await rows(HOARDER)
    assert.equal(held.length, 10)
    assert.deepEqual(
      held.map((r) => r.rkey),
      Array.from({ length: 10 }, (_, i) => `k${i}`),
    )
    assert.equal(held[0]!.deleted, true)
    assert.equal((await refused()) - before, 7, 'k10…k15 and hoard.example refused')
  })

  it('a stranger rewriting records costs a bounded number of runs; check now and the sweep still run; nothing is lost', async () => {
    const write = (n: number) =>
      h.jetstream.commit(LOOPER, {
        operation: 'create',
        collection: ATTESTATION,
        rkey: 'loop.example',
        cid: `bafyloop${n}`,
        record: attestationRecord('loop.example'),
      })
    for (let i = 0; i < NETWORK_RUNS; i++) {
      write(i)
      await eventually(async () => ((await runs(LOOPER)).length === i + 1 ? true : undefined), 60_000, `run ${i + 1}`)
    }
    // Past the budget: written, deleted and rewritten in a loop, ten times over.
    for (let i = NETWORK_RUNS; i < NETWORK_RUNS + 10; i++) {
      write(i)
      h.jetstream.commit(LOOPER, { operation: 'delete', collection: ATTESTATION, rkey: 'loop.example' })
    }
    const last = NETWORK_RUNS + 10
    write(last)
    const deferred = async (n: number) =>
      eventually(async () => {
        const [row] = await rows(LOOPER)
        if (row?.cid !== `bafyloop${n}` || !row.verifyRequestedAt) return undefined
        const job = await queue.queue.getJob(
          verifyJobId({ did: LOOPER, rkey: 'loop.example', requestedAt: row.verifyRequestedAt }),
        )
        return (await job?.getState()) === 'delayed' ? job : undefined
      })
    await deferred(last)
    // Every other job of the loop has been looked at: none is waiting or running.
    await eventually(async () => {
      const c = await queue.queue.getJobCounts('waiting', 'active', 'prioritized')
      return (c.waiting ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0) === 0 ? true : undefined
    })
    assert.equal((await runs(LOOPER)).length, NETWORK_RUNS)
    assert.match(await metrics(), /atmos_labeler_verifications_deferred_total\{kind="network",service="labeler"\} \d/)

    // A member's "check now" has a budget of its own; its run answers the deferred request too.
    const checkNow = () =>
      queue.enqueue({ did: LOOPER, rkey: 'loop.example', trigger: 'admin', requestedAt: new Date().toISOString() })
    for (let i = 1; i <= ADMIN_RUNS; i++) {
      await checkNow()
      await eventually(async () =>
        (await runs(LOOPER)).filter((r) => r.trigger === 'admin').length === i ? true : undefined,
      )
    }
    assert.equal((await rows(LOOPER))[0]?.verifyRequestedAt, null)
    const beyond = await checkNow()
    await eventually(async () => ((await beyond.getState()) === 'delayed' ? true : undefined))

    // The scheduler's sweep is not counted.
    await queue.enqueue({
      did: LOOPER,
      rkey: 'loop.example',
      trigger: 'schedule',
      requestedAt: new Date().toISOString(),
    })
    await eventually(async () => ((await runs(LOOPER)).some((r) => r.trigger === 'schedule') ? true : undefined))

    // One more write is deferred; in the next window it runs, once, and is answered.
    write(last + 1)
    const pending = await deferred(last + 1)
    clock.advance(HOUR)
    await pending.promote()
    await eventually(async () => ((await rows(LOOPER))[0]?.verifyRequestedAt === null ? true : undefined))
    const ingestRuns = (await runs(LOOPER)).filter((r) => r.trigger === 'ingest')
    assert.equal(ingestRuns.length, NETWORK_RUNS + 1)
    const [latest] = await db()
      .select()
      .from(attestations)
      .where(and(eq(attestations.did, LOOPER), eq(attestations.rkey, 'loop.example')))
    assert.equal(latest?.state, 'valid')
    assert.equal(latest?.cid, `bafyloop${last + 1}`)
  })

  it('a retry of a temporary error is answered by any later run: chains of retries never multiply', async () => {
    const [run] = await runs(NULLER)
    assert.ok(run, 'NULLER was verified above')
    const asked = new Date(run.startedAt.getTime() - 1000).toISOString()
    const payload = { did: NULLER, rkey: 'nul.example', trigger: 'schedule' as const, requestedAt: asked }
    const before = (await runs(NULLER)).length
    // The worker's own follow-up, asked before that run started: nothing left to do.
    const retry = { id: 'retry_nuller_1' } as Job
    assert.equal((await h.service.ctx.verifyWorker.process(payload, retry)).outcome, 'superseded')
    assert.equal((await runs(NULLER)).length, before)
    // The scheduler's sweep, asked at the same time, still runs.
    const sweep = { id: 'sched_nuller_1' } as Job
    assert.equal((await h.service.ctx.verifyWorker.process(payload, sweep)).outcome, 'pass')
    assert.equal((await runs(NULLER)).length, before + 1)
  })
})
