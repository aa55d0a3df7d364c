import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createSigningKeyFile, decodeFrame } from '@atmos/labels'
import { createTestDatabase, TEST_REDIS_URL, type TestDatabase, testRedisPrefix } from '@atmos/testkit'
import WebSocket from 'ws'
import { labelerConfigSchema } from '../src/config.ts'
import { LabelerService } from '../src/service.ts'
import { eventually } from './helpers.ts'

type Page = { labels: Array<Record<string, unknown>>; cursor?: string }

/**
 * The queryLabels page cache against a real labeler: a label change drops exactly the
 * pages it can appear on, as soon as this process has read the change (the moment its
 * subscribers get it), including a change that commits while a page is being built.
 * A page served from the cache is told apart from a fresh one by editing a stored row
 * behind the labeler's back (no announcement): only a fresh query shows the edit.
 */
describe('queryLabels page cache invalidation', () => {
  let tdb: TestDatabase
  let service: LabelerService
  let base: string
  let live: WebSocket
  const seen: number[] = []
  // The hook between a page's query and its offer to the cache.
  let hold: { reached: () => void; release: Promise<void> } | undefined

  before(async () => {
    tdb = await createTestDatabase()
    const keyFile = join(mkdtempSync(join(tmpdir(), 'atmos-qcache-')), 'k.key')
    await createSigningKeyFile(keyFile)
    const config = loadConfig(labelerConfigSchema, {
      env: {
        ATMOS_DATABASE_URL: tdb.url,
        ATMOS_REDIS_URL: TEST_REDIS_URL,
        ATMOS_REDIS_PREFIX: testRedisPrefix('qcache'),
        ATMOS_HTTP_PORT: '0',
        ATMOS_LOG_LEVEL: 'silent',
        ATMOS_LABELER_SIGNING_KEY_FILE: keyFile,
        ATMOS_LABELER_XRPC_PORT: '0',
        ATMOS_LABELER_INGEST_SOURCE: 'none',
      },
    })
    service = await LabelerService.create(config, {
      afterPageQuery: async () => {
        const h = hold
        if (!h) return
        hold = undefined
        h.reached()
        await h.release
      },
    })
    await service.start()
    await service.whenStarted()
    base = service.xrpcUrl!
    for (const uri of ['did:plc:aa1', 'did:plc:aa2', 'did:plc:aa3', 'did:plc:bb1', 'did:plc:bb2', 'did:plc:bb3']) {
      await service.ctx.labelWriter.emit([{ uri, val: 'verified-mail-operator', neg: false, reason: 't' }])
    }
    // A live subscriber: a frame for seq N means this process has read label N, which is
    // when its cache hears of it.
    live = new WebSocket(`${base.replace('http', 'ws')}/xrpc/com.atproto.label.subscribeLabels`)
    live.on('message', (d: Buffer) => seen.push(Number((decodeFrame(new Uint8Array(d)).body as { seq?: number }).seq)))
    await new Promise((r) => live.once('open', r))
  })
  after(async () => {
    live?.close()
    await service?.destroy()
    await tdb?.drop()
  })

  const query = async (qs: string): Promise<Page> => {
    const res = await fetch(`${base}/xrpc/com.atproto.label.queryLabels?${qs}`)
    assert.equal(res.status, 200)
    return (await res.json()) as Page
  }
  /** Writes a label change and waits until this process has read it. */
  const change = async (uri: string, neg: boolean) => {
    const [stored] = await service.ctx.labelWriter.emit([{ uri, val: 'verified-mail-operator', neg, reason: 't' }])
    await eventually(async () => (seen.includes(stored!.seq) ? true : undefined), 30_000, `label ${stored!.seq} read`)
  }
  /** Changes a stored row's JSON without announcing it: only an uncached page shows it. */
  const editBehindTheBack = async (uri: string) => {
    await service.ctx.db.$client`
      update labels set wire_json = jsonb_set(wire_json::jsonb, '{edited}', 'true')::text where uri = ${uri}`
  }
  const edited = (page: Page, uri: string) => page.labels.find((l) => l.uri === uri)?.edited === true
  const negated = (page: Page, uri: string) => page.labels.find((l) => l.uri === uri)?.neg === true

  it('a change drops the pages it can appear on and leaves the others cached', async () => {
    await query('uriPatterns=did:plc:aa*')
    await query('uriPatterns=did:plc:bb*')
    await query('uriPatterns=did:plc:bb2')
    await editBehindTheBack('did:plc:bb1')
    await editBehindTheBack('did:plc:bb2')
    await change('did:plc:aa2', true)
    assert.equal(negated(await query('uriPatterns=did:plc:aa*'), 'did:plc:aa2'), true)
    // Still the cached pages: the edit does not show.
    assert.equal(edited(await query('uriPatterns=did:plc:bb*'), 'did:plc:bb1'), false)
    assert.equal(edited(await query('uriPatterns=did:plc:bb2'), 'did:plc:bb2'), false)
    await change('did:plc:bb3', true)
    const bb = await query('uriPatterns=did:plc:bb*')
    assert.equal(negated(bb, 'did:plc:bb3'), true)
    assert.equal(edited(bb, 'did:plc:bb1'), true, 'the prefix page was rebuilt')
    // The exact page of another subject under that prefix stayed.
    assert.equal(edited(await query('uriPatterns=did:plc:bb2'), 'did:plc:bb2'), false)
  })

  it('a full page is not dropped by a change past its last label; the next page is', async () => {
    const first = await query('uriPatterns=did:plc:aa*&limit=1')
    assert.equal(first.labels[0]!.uri, 'did:plc:aa1')
    const next = `uriPatterns=did:plc:aa*&limit=2&cursor=${encodeURIComponent(first.cursor!)}`
    assert.deepEqual(
      (await query(next)).labels.map((l) => l.uri),
      ['did:plc:aa2', 'did:plc:aa3'],
    )
    await editBehindTheBack('did:plc:aa1')
    await editBehindTheBack('did:plc:aa2')
    await change('did:plc:aa3', false)
    assert.equal(edited(await query('uriPatterns=did:plc:aa*&limit=1'), 'did:plc:aa1'), false)
    assert.equal(edited(await query(next), 'did:plc:aa2'), true)
  })

  it('a change that lands while a page is being built never leaves that page cached', async () => {
    const qs = 'uriPatterns=did:plc:bb*&limit=40'
    let reached!: () => void
    let release!: () => void
    const atHook = new Promise<void>((r) => {
      reached = r
    })
    hold = { reached, release: new Promise<void>((r) => (release = r)) }
    const building = query(qs)
    await atHook
    // The page's query has run; the change commits and is read before the page is offered.
    await change('did:plc:bb1', true)
    release()
    assert.equal(negated(await building, 'did:plc:bb1'), false, 'built before the change')
    assert.equal(negated(await query(qs), 'did:plc:bb1'), true, 'the change shows at once')
  })

  it('a change elsewhere while a page is built lets it be cached', async () => {
    const qs = 'uriPatterns=did:plc:aa*&limit=41'
    let reached!: () => void
    let release!: () => void
    const atHook = new Promise<void>((r) => {
      reached = r
    })
    hold = { reached, release: new Promise<void>((r) => (release = r)) }
    const building = query(qs)
    await atHook
    await change('did:plc:bb2', true)
    release()
    await building
    await editBehindTheBack('did:plc:aa3')
    assert.equal(edited(await query(qs), 'did:plc:aa3'), false, 'served from the cache')
  })

  it('re-signed labels drop every cached page', async () => {
    await change('did:plc:dd1', false)
    const qs = 'uriPatterns=did:plc:dd*'
    await query(qs)
    await editBehindTheBack('did:plc:dd1')
    assert.equal(edited(await query(qs), 'did:plc:dd1'), false)
    await service.ctx.db.$client`select pg_notify('atmos_labels', 'resigned')`
    await eventually(async () => (edited(await query(qs), 'did:plc:dd1') ? true : undefined), 30_000, 'pages dropped')
  })

  it('rows without stored JSON are rendered by the query exactly as the writer stores them', async () => {
    const sql = service.ctx.db.$client
    await service.ctx.labelWriter.emit([
      { uri: 'did:plc:cc1', val: 'relay-member', neg: false, exp: '2027-01-01T00:00:00.000Z', reason: 't' },
      { uri: 'did:plc:cc2', val: 'relay-member', neg: true, reason: 't' },
    ])
    const stored = await sql<{ uri: string; wire_json: string }[]>`
      select uri, wire_json from labels where uri like 'did:plc:cc%' order by uri`
    await sql`update labels set wire_json = null where uri like 'did:plc:cc%'`
    await sql`select pg_notify('atmos_labels', 'resigned')`
    await eventually(
      async () => {
        const page = await query('uriPatterns=did:plc:cc*')
        return page.labels.length === 2 ? page : undefined
      },
      30_000,
      'the cc page',
    ).then((page) => {
      assert.deepEqual(
        page.labels,
        stored.map((r) => JSON.parse(r.wire_json)),
      )
    })
  })
})
