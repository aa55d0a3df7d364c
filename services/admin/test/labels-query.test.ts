import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { currentLabels, labelReader } from '../src/labels/query.ts'

// The admin reads an account's labels through queryLabels like any client: the newest per
// value counts, negations and past exp drop a value, other subjects and sources are ignored,
// and a labeler that is away or answers nonsense gives a reason, not an exception.

const DID = 'did:plc:labelsquery00000000000000'
const SRC = 'did:plc:ourlabeler0000000000000000'

describe('currentLabels', () => {
  const now = new Date('2026-12-07T12:00:00Z')
  it('keeps the newest label per value and drops negated and expired ones', () => {
    const got = currentLabels(
      [
        { src: SRC, uri: DID, val: 'verified-mail-operator', cts: '2026-12-07T10:00:00Z', exp: '2026-12-08T10:00:00Z' },
        { src: SRC, uri: DID, val: 'relay-member', cts: '2026-12-07T10:00:00Z' },
        { src: SRC, uri: DID, val: 'relay-member', cts: '2026-12-07T11:00:00Z', neg: true },
        { src: SRC, uri: DID, val: 'clean-sender', cts: '2026-12-01T10:00:00Z', exp: '2026-12-02T10:00:00Z' },
        { src: SRC, uri: `${DID}x`, val: 'other-subject', cts: '2026-12-07T10:00:00Z' },
        { src: 'did:plc:someoneelse', uri: DID, val: 'foreign', cts: '2026-12-07T10:00:00Z' },
      ],
      DID,
      SRC,
      now,
    )
    assert.deepEqual(got, [
      { val: 'verified-mail-operator', cts: '2026-12-07T10:00:00Z', exp: '2026-12-08T10:00:00Z', src: SRC },
    ])
  })
  it('a label given again after a negation is current', () => {
    const got = currentLabels(
      [
        { src: SRC, uri: DID, val: 'relay-member', cts: '2026-12-07T09:00:00Z', neg: true },
        { src: SRC, uri: DID, val: 'relay-member', cts: '2026-12-07T11:00:00Z' },
      ],
      DID,
      undefined,
      now,
    )
    assert.deepEqual(
      got.map((l) => l.val),
      ['relay-member'],
    )
  })
})

describe('labelReader over HTTP', () => {
  let server: Server
  let base = ''
  let answer: (url: URL) => { status: number; body: string } = () => ({ status: 200, body: '{"labels":[]}' })
  const asked: URL[] = []
  before(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x')
      asked.push(url)
      const a = answer(url)
      res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => new Promise<void>((r) => server.close(() => r())))

  it('asks queryLabels for exactly the DID and the labeler as source', async () => {
    answer = () => ({
      status: 200,
      body: JSON.stringify({ labels: [{ src: SRC, uri: DID, val: 'relay-member', cts: '2026-12-07T10:00:00Z' }] }),
    })
    const got = await labelReader({ baseUrl: base, labelerDid: SRC })(DID)
    assert.deepEqual(got, {
      ok: true,
      labels: [{ val: 'relay-member', cts: '2026-12-07T10:00:00Z', exp: null, src: SRC }],
    })
    const url = asked.at(-1)!
    assert.equal(url.pathname, '/xrpc/com.atproto.label.queryLabels')
    assert.deepEqual(url.searchParams.getAll('uriPatterns'), [DID])
    assert.deepEqual(url.searchParams.getAll('sources'), [SRC])
  })
  it('an error status, a malformed answer and an unreachable labeler each give a reason', async () => {
    answer = () => ({ status: 502, body: '{}' })
    assert.deepEqual(await labelReader({ baseUrl: base })(DID), { ok: false, reason: 'the labeler answered HTTP 502' })
    answer = () => ({ status: 200, body: '{"labels":"nope"}' })
    const bad = await labelReader({ baseUrl: base })(DID)
    assert.equal(bad.ok, false)
    const closed = await labelReader({ baseUrl: 'http://127.0.0.1:9' })(DID)
    assert.deepEqual(closed, { ok: false, reason: 'the labeler could not be reached' })
    const none = await labelReader({ baseUrl: '' })(DID)
    assert.equal(none.ok, false)
  })
})
