import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { readUnsubscribeToken } from '@atmos/mail-feedback'
import { suppress } from '@atmos/reputation'
import { readSecretFile } from '@atmos/secrets'
import { MxSink, TestDnsServer } from '@atmos/testkit'
import { authenticate } from 'mailauth'
import type { AddedMember } from '../src/members/store.ts'
import { fieldValue, parseMessage } from '../src/message/headers.ts'
import { deliveryEnv, startDelivery } from './delivery-helpers.ts'
import {
  createMember,
  dkimZone,
  dnsResolverFor,
  type Harness,
  POOL_DOMAIN,
  poolPublicKey,
  refusal,
  rfc822,
  startSubmission,
  submitRaw,
} from './helpers.ts'

// Categories and one-click unsubscribe (RFC 8058), from submission to an MX: the headers the
// relay adds per recipient, signed by every DKIM signature, as the receiving MX sees them.

const UNSUB_URL = 'https://pool.example/u'

describe('categories and one-click unsubscribe', () => {
  let h: Harness
  let alice: AddedMember
  let dns: TestDnsServer
  let sink: MxSink
  let stopDelivery: () => Promise<void>

  before(async () => {
    h = await startSubmission({
      ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_URL: UNSUB_URL,
      ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_TRANSACTIONAL_CATEGORIES: 'receipt,order-status',
    })
    alice = await createMember(h, 'member.example')
    sink = new MxSink({ name: 'dest', host: '127.0.0.2' })
    const mxPort = await sink.start()
    dns = new TestDnsServer({
      ...dkimZone(alice),
      'pool1._domainkey.pool.example': { TXT: [`v=DKIM1; k=rsa; p=${await poolPublicKey(h.sql)}`] },
      'dest.example': { MX: [{ priority: 10, exchange: 'mx.dest.example' }] },
      'mx.dest.example': { A: ['127.0.0.2'] },
    })
    await dns.start()
    const running = await startDelivery({
      ...h.env,
      ...deliveryEnv({ databaseUrl: h.db.url, redisPrefix: h.prefix, dnsPort: dns.port, mxPort }),
      ATMOS_LOG_LEVEL: 'silent',
    })
    stopDelivery = running.stop
  })
  after(async () => {
    await stopDelivery?.()
    await sink?.close()
    await dns?.close()
    await h?.close()
  })

  const secret = () => readSecretFile(h.files.tokenSecretFile)

  async function send(to: string[], headers: Record<string, string>) {
    return submitRaw(
      h.port,
      alice,
      { from: 'news@member.example', to },
      rfc822(
        { From: 'Alice <news@member.example>', To: to.join(', '), Subject: 'Hello', ...headers },
        'Hello there\r\n',
      ),
    )
  }

  /** The copies the MX accepted for an address, once it has `n` of them. */
  async function arrived(address: string, n: number) {
    const deadline = Date.now() + 30_000
    while (sink.to(address).length < n) {
      if (Date.now() > deadline) throw new Error(`${address}: ${sink.to(address).length} of ${n} arrived`)
      await new Promise((r) => setTimeout(r, 50))
    }
    return sink.to(address)
  }

  function fields(raw: string) {
    const parsed = parseMessage(Buffer.from(raw))
    return (name: string) => parsed.fields.filter((f) => f.key === name.toLowerCase()).map(fieldValue)
  }

  async function dkim(raw: string) {
    const auth = await authenticate(Buffer.from(raw), {
      ip: '198.51.100.7',
      helo: 'relay.pool.example',
      sender: 'b@bounces.pool.example',
      mta: 'mx.dest.example',
      resolver: dnsResolverFor(dns.address) as never,
    })
    return auth.dkim.results
  }

  it('gives marketing mail a per-recipient List-Unsubscribe and List-Unsubscribe-Post, covered by every DKIM signature', async () => {
    const to = ['ann@dest.example', 'ben@dest.example']
    await send(to, {
      'X-Atmos-Category': 'Newsletter',
      // The member's own would be a second header: ours replaces it.
      'List-Unsubscribe': '<https://member.example/unsub>',
    })
    const rows = await h.sql<
      { id: string; category: string | null; address: string; return_path: string; body_hash: string | null }[]
    >`
      select m.id, m.category, r.address, m.return_path, m.body_hash
      from messages m join message_recipients r on r.message_id = m.id`
    assert.deepEqual(
      rows.map((r) => [r.address, r.category, r.body_hash]),
      to.map((a) => [a, 'newsletter', null]),
    )
    for (const row of rows) {
      const [copy] = await arrived(row.address, 1)
      const get = fields(copy!.raw)
      assert.deepEqual(get('X-Atmos-Category'), [], 'the category header is not sent on')
      assert.deepEqual(get('List-Unsubscribe-Post'), ['List-Unsubscribe=One-Click'])
      const [list] = get('List-Unsubscribe')
      assert.equal(get('List-Unsubscribe').length, 1)
      const m = /^<(https:\/\/pool\.example\/u\/[^>]+)>,\s*<mailto:([^?>]+)\?subject=unsubscribe>$/.exec(list!)
      assert.ok(m, list)
      assert.equal(m[2], row.return_path, 'the mailto is the VERP address fbl-ingest reads')
      const token = m[1]!.slice(`${UNSUB_URL}/`.length)
      assert.deepEqual(readUnsubscribeToken({ secret: secret() }, token), {
        memberId: alice.id,
        recipient: row.address,
        messageId: row.id,
      })

      const results = await dkim(copy!.raw)
      assert.deepEqual(
        results.map((r) => [r.signingDomain, r.status.result]),
        [
          ['member.example', 'pass'],
          ['member.example', 'pass'],
          [POOL_DOMAIN, 'pass'],
        ],
      )
      for (const sig of get('DKIM-Signature')) {
        const signed = /(?:^|;)\s*h=([^;]+)/.exec(sig)![1]!.replace(/\s+/g, '').toLowerCase().split(':')
        // Over-signed: one more than present, so one added later breaks the signature.
        assert.equal(signed.filter((k) => k === 'list-unsubscribe').length, 2, sig)
        assert.equal(signed.filter((k) => k === 'list-unsubscribe-post').length, 2, sig)
      }
    }
  })

  it('an altered List-Unsubscribe breaks every signature', async () => {
    const [copy] = await arrived('ann@dest.example', 1)
    const tampered = copy!.raw.replace(
      /(List-Unsubscribe: <https:\/\/pool\.example\/u\/)([0-9])/,
      (_, head: string, digit: string) => `${head}${digit === '1' ? '2' : '1'}`,
    )
    assert.notEqual(tampered, copy!.raw)
    assert.deepEqual(
      (await dkim(tampered)).map((r) => r.status.result),
      ['fail', 'fail', 'fail'],
    )
  })

  it('sends transactional mail, and mail without a category, with no unsubscribe', async () => {
    for (const [i, category] of ['password-reset', 'receipt', null].entries()) {
      const to = `tx${i}@dest.example`
      await send([to], {
        ...(category ? { 'X-Atmos-Category': category } : {}),
        'List-Unsubscribe': '<https://member.example/own>',
      })
      const [copy] = await arrived(to, 1)
      const get = fields(copy!.raw)
      assert.deepEqual(get('List-Unsubscribe-Post'), [], String(category))
      // The member's own list header travels untouched when the relay adds none.
      assert.deepEqual(get('List-Unsubscribe'), ['<https://member.example/own>'])
      assert.deepEqual(get('X-Atmos-Category'), [])
      const [row] = await h.sql<{ category: string | null; body_hash: string | null }[]>`
        select m.category, m.body_hash from messages m join message_recipients r on r.message_id = m.id
        where r.address = ${to}`
      assert.equal(row!.category, category)
      // The body's hash is kept for transactional categories only (the operator's category mismatch).
      if (category) assert.match(row!.body_hash ?? '', /^[A-Za-z0-9_-]{43}$/)
      else assert.equal(row!.body_hash, null)
    }
  })

  it('refuses a category that is not a short token, and two of them, naming the header', async () => {
    for (const headers of [{ 'X-Atmos-Category': 'news letter' }, { 'X-Atmos-Category': 'x'.repeat(41) }]) {
      const err = await refusal(send(['bad@dest.example'], headers))
      assert.equal(err.responseCode, 550)
      assert.match(err.response ?? '', /5\.6\.0 X-Atmos-Category must be/)
    }
    const raw = rfc822(
      { From: 'news@member.example', To: 'bad@dest.example', 'X-Atmos-Category': 'a' },
      'x\r\n',
    ).replace('\r\n\r\n', '\r\nX-Atmos-Category: b\r\n\r\n')
    const err = await refusal(submitRaw(h.port, alice, { from: 'news@member.example', to: ['bad@dest.example'] }, raw))
    assert.match(err.response ?? '', /^550 5\.6\.0 a message may have one X-Atmos-Category header, found 2/)
  })

  it('refuses the next submission to a recipient who unsubscribed', async () => {
    await suppress(h.ctx.db, { memberId: alice.id, address: 'ben@dest.example', reason: 'unsubscribe' })
    const err = await refusal(send(['ben@dest.example'], { 'X-Atmos-Category': 'newsletter' }))
    assert.equal(err.responseCode, 550)
    assert.match(err.response ?? '', /its owner unsubscribed/)
  })
})
