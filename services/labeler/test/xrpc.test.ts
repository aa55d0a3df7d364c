import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createSigningKeyFile, decodeFrame, type SignedLabel, verifyLabel } from '@atmos/labels'
import { createTestDatabase, TEST_REDIS_URL, type TestDatabase, testRedisPrefix } from '@atmos/testkit'
import WebSocket from 'ws'
import { labelerConfigSchema } from '../src/config.ts'
import { LabelerService } from '../src/service.ts'
import { eventually } from './helpers.ts'

describe('label XRPC endpoints', () => {
  let tdb: TestDatabase
  let service: LabelerService
  let base: string
  let didKey: string

  before(async () => {
    tdb = await createTestDatabase()
    const keyFile = join(mkdtempSync(join(tmpdir(), 'atmos-xrpc-')), 'k.key')
    didKey = (await createSigningKeyFile(keyFile)).did()
    const config = loadConfig(labelerConfigSchema, {
      env: {
        ATMOS_DATABASE_URL: tdb.url,
        ATMOS_REDIS_URL: TEST_REDIS_URL,
        ATMOS_REDIS_PREFIX: testRedisPrefix('xrpc'),
        ATMOS_HTTP_PORT: '0',
        ATMOS_LOG_LEVEL: 'silent',
        ATMOS_LABELER_SIGNING_KEY_FILE: keyFile,
        ATMOS_LABELER_XRPC_PORT: '0',
        ATMOS_LABELER_INGEST_SOURCE: 'none',
        ATMOS_LABELER_SUBSCRIBE_MAX_BUFFER: '1000',
      },
    })
    service = await LabelerService.create(config)
    await service.start()
    await service.whenStarted()
    base = service.xrpcUrl!
    const w = service.ctx.labelWriter
    for (let i = 0; i < 5; i++)
      await w.emit([{ uri: `did:plc:member${i}`, val: 'verified-mail-operator', neg: false, reason: 't' }])
    await w.emit([{ uri: 'did:web:other.example', val: 'relay-member', neg: false, reason: 't' }])
    await w.emit([{ uri: 'did:plc:member0', val: 'verified-mail-operator', neg: true, reason: 'degraded' }])
  })
  after(async () => {
    await service?.destroy()
    await tdb?.drop()
  })

  const query = (qs: string) => fetch(`${base}/xrpc/com.atproto.label.queryLabels?${qs}`)

  it('queryLabels: prefix patterns, latest state once per label, signatures that verify', async () => {
    const res = await query('uriPatterns=did:plc:*')
    assert.equal(res.status, 200)
    const body = (await res.json()) as { labels: Array<Record<string, unknown>>; cursor?: string }
    assert.equal(body.labels.length, 5)
    const m0 = body.labels.filter((l) => l.uri === 'did:plc:member0')
    assert.equal(m0.length, 1)
    assert.equal(m0[0]!.neg, true)
    for (const l of body.labels) {
      const sig = Buffer.from((l.sig as { $bytes: string }).$bytes, 'base64')
      assert.equal(await verifyLabel({ ...(l as unknown as SignedLabel), sig }, didKey), true)
    }
    const exact = (await (await query('uriPatterns=did:web:other.example')).json()) as { labels: unknown[] }
    assert.equal(exact.labels.length, 1)
    const none = (await (await query('uriPatterns=did:plc:member&sources=did:plc:nobody')).json()) as {
      labels: unknown[]
    }
    assert.equal(none.labels.length, 0)
  })

  it('queryLabels: pages with limit and cursor', async () => {
    const first = (await (await query('uriPatterns=did:*&limit=4')).json()) as { labels: unknown[]; cursor: string }
    assert.equal(first.labels.length, 4)
    const second = (await (await query(`uriPatterns=did:*&limit=4&cursor=${first.cursor}`)).json()) as {
      labels: unknown[]
    }
    assert.equal(second.labels.length, 2)
  })

  it('queryLabels: bad parameters get XRPC errors', async () => {
    for (const qs of [
      '',
      'uriPatterns=did:*&limit=0',
      'uriPatterns=did:*&limit=251',
      'uriPatterns=did:*&cursor=abc',
      'uriPatterns=did:*:member0',
      'uriPatterns=**',
      'uriPatterns=*did:plc:member0',
    ]) {
      const res = await query(qs)
      assert.equal(res.status, 400, qs)
      assert.equal(((await res.json()) as { error: string }).error, 'InvalidRequest')
    }
    const star = (await (await query('uriPatterns=did:*:member0')).json()) as { message: string }
    assert.match(star.message, /"\*" only as the last character/)
  })

  it('queryLabels: "*" matches every label, paged and bounded like any pattern', async () => {
    const seen: string[] = []
    let cursor: string | undefined
    for (let page = 0; page < 10; page++) {
      const res = await query(`uriPatterns=*&limit=4${cursor ? `&cursor=${cursor}` : ''}`)
      assert.equal(res.status, 200)
      const body = (await res.json()) as { labels: Array<{ uri: string; val: string }>; cursor?: string }
      assert.ok(body.labels.length <= 4)
      seen.push(...body.labels.map((l) => `${l.uri} ${l.val}`))
      cursor = body.cursor
      if (!cursor) break
    }
    const all = [
      ...[0, 1, 2, 3, 4].map((i) => `did:plc:member${i} verified-mail-operator`),
      'did:web:other.example relay-member',
    ]
    assert.deepEqual(seen, all)
    // Patterns that overlap `*` (or each other) add nothing, and nothing twice.
    const overlapping = (await (
      await query(
        'uriPatterns=did:plc:*&uriPatterns=*&uriPatterns=did:web:other.example&uriPatterns=did:plc:member1&limit=250',
      )
    ).json()) as { labels: Array<{ uri: string; val: string }> }
    assert.deepEqual(
      overlapping.labels.map((l) => `${l.uri} ${l.val}`),
      all,
    )
    const nested = (await (
      await query(
        'uriPatterns=did:plc:member*&uriPatterns=did:plc:*&uriPatterns=did:plc:member1&uriPatterns=did:plc:member1',
      )
    ).json()) as { labels: unknown[] }
    assert.equal(nested.labels.length, 5)
  })

  it('queryLabels: a query too long for the HTTP parser gets an XRPC error body', async () => {
    // After an ordinary request, so that the long one may arrive on a kept-alive connection.
    assert.equal((await query('uriPatterns=did:plc:member0')).status, 200)
    const res = await query(`uriPatterns=did:plc:${'a'.repeat(20_000)}`)
    assert.equal(res.status, 431)
    assert.match(res.headers.get('content-type') ?? '', /application\/json/)
    const body = (await res.json()) as { error: string; message: string }
    assert.equal(body.error, 'InvalidRequest')
    assert.match(body.message, /exceed 16384 bytes: ask for fewer uriPatterns/)
    // The endpoint still serves.
    assert.equal((await query('uriPatterns=*')).status, 200)
  })

  function collect(url: string, until: (frames: ReturnType<typeof decodeFrame>[]) => boolean) {
    return new Promise<{ frames: ReturnType<typeof decodeFrame>[]; closed: boolean }>((resolve, reject) => {
      const ws = new WebSocket(url)
      const frames: ReturnType<typeof decodeFrame>[] = []
      ws.on('message', (data: Buffer) => {
        frames.push(decodeFrame(new Uint8Array(data)))
        if (until(frames)) {
          ws.close()
          resolve({ frames, closed: false })
        }
      })
      ws.on('close', () => resolve({ frames, closed: true }))
      ws.on('error', reject)
    })
  }

  it('subscribeLabels: replays from cursor 0 in order with verifiable signatures', async () => {
    const wsBase = base.replace('http', 'ws')
    const { frames } = await collect(`${wsBase}/xrpc/com.atproto.label.subscribeLabels?cursor=0`, (f) => f.length === 6)
    const seqs = frames.map((f) => (f.body as { seq: number }).seq)
    assert.deepEqual(
      [...seqs].sort((a, b) => a - b),
      seqs,
    )
    for (const f of frames) {
      assert.deepEqual(f.header, { op: 1, t: '#labels' })
      const [label] = (f.body as { labels: SignedLabel[] }).labels
      assert.equal(await verifyLabel(label!, didKey), true)
    }
  })

  it('subscribeLabels: a cursor in the future gets FutureCursor and a close', async () => {
    const wsBase = base.replace('http', 'ws')
    const { frames, closed } = await collect(
      `${wsBase}/xrpc/com.atproto.label.subscribeLabels?cursor=999999`,
      () => false,
    )
    assert.equal(closed, true)
    assert.deepEqual(frames, [
      { header: { op: -1 }, body: { error: 'FutureCursor', message: 'Cursor in the future.' } },
    ])
  })

  it('subscribeLabels: a bad cursor gets InvalidRequest', async () => {
    const wsBase = base.replace('http', 'ws')
    const { frames, closed } = await collect(`${wsBase}/xrpc/com.atproto.label.subscribeLabels?cursor=-1`, () => false)
    assert.equal(closed, true)
    assert.equal((frames[0]!.body as { error: string }).error, 'InvalidRequest')
  })

  it('subscribeLabels: a reader that stops reading is cut off with ConsumerTooSlow; the others are not held up', async () => {
    const wsBase = base.replace('http', 'ws')
    const slow = new WebSocket(`${wsBase}/xrpc/com.atproto.label.subscribeLabels`)
    const fast = new WebSocket(`${wsBase}/xrpc/com.atproto.label.subscribeLabels`)
    await Promise.all([new Promise((r) => slow.once('open', r)), new Promise((r) => fast.once('open', r))])
    // The slow one stops reading from its socket altogether.
    ;(slow as unknown as { _socket: { pause: () => void; resume: () => void } })._socket.pause()
    let fastCount = 0
    fast.on('message', () => fastCount++)
    // Far more than the socket buffers and the subscriber queue hold, written straight to
    // the table (signatures are not the point here) and announced as the writer does.
    const burst = 40_000
    const sql = service.ctx.db.$client
    const [row] = await sql<{ max: number }[]>`select coalesce(max(seq), 0)::int as max from labels`
    const max = row!.max
    await sql`insert into labels (seq, src, uri, val, cts, sig, signing_key_id)
      select ${max} + g, 'did:plc:burst', 'did:plc:burst' || g, 'relay-member', '2026-11-25T00:00:00.000Z',
             decode(repeat('ab', 64), 'hex'), (select id from label_signing_keys limit 1)
      from generate_series(1, ${burst}) g`
    await sql`select setval('label_seq', ${max + burst})`
    await sql`select pg_notify('atmos_labels', ${String(max + burst)})`
    await eventually(async () => (fastCount === burst ? true : undefined), 30_000, 'the fast reader to get every label')
    const slowFrames: ReturnType<typeof decodeFrame>[] = []
    const closed = new Promise<number>((resolve) => slow.once('close', (code) => resolve(code)))
    slow.on('message', (d: Buffer) => slowFrames.push(decodeFrame(new Uint8Array(d))))
    ;(slow as unknown as { _socket: { resume: () => void } })._socket.resume()
    assert.equal(await closed, 1008)
    assert.ok(slowFrames.length < burst, 'the slow reader was cut off before the end')
    assert.deepEqual(slowFrames.at(-1)?.body, { error: 'ConsumerTooSlow', message: 'Stream consumer too slow' })
    fast.close()
    await sql`delete from labels where src = 'did:plc:burst'`
  })

  it('subscribeLabels: without a cursor, only labels written after connecting', async () => {
    const wsBase = base.replace('http', 'ws')
    const ws = new WebSocket(`${wsBase}/xrpc/com.atproto.label.subscribeLabels`)
    await new Promise((r) => ws.once('open', r))
    const got = new Promise<ReturnType<typeof decodeFrame>>((resolve) =>
      ws.once('message', (d: Buffer) => resolve(decodeFrame(new Uint8Array(d)))),
    )
    await new Promise((r) => setTimeout(r, 200))
    await service.ctx.labelWriter.emit([{ uri: 'did:plc:late', val: 'relay-member', neg: false, reason: 't' }])
    const frame = await got
    ws.close()
    assert.equal((frame.body as { labels: SignedLabel[] }).labels[0]!.uri, 'did:plc:late')
  })
})
