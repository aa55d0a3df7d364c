import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { issueApiKey, revokeApiKey } from '@atmos/enrolment'
import { MEMBER_DID_HEADER } from '@atmos/mail-feedback'
import { TestDnsServer } from '@atmos/testkit'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { authenticate } from 'mailauth'
import MailComposer from 'nodemailer/lib/mail-composer'
import { HEADER_NAME, headerNamePattern, sendRequestSchema } from '../src/api/schema.ts'
import type { AddedMember } from '../src/members/store.ts'
import { fieldValue, parseMessage } from '../src/message/headers.ts'
import {
  createMember,
  dkimZone,
  dnsResolverFor,
  type Harness,
  POOL_DOMAIN,
  poolPublicKey,
  refusal,
  setHolds,
  spooled,
  startSubmission,
  submitRaw,
} from './helpers.ts'

const RATE_LIMIT = 40

describe('the header-name pattern', () => {
  it('is written out exactly as its lists make it, and refuses their names in any case', () => {
    assert.equal(HEADER_NAME.source, headerNamePattern())
    for (const ok of ['X-Mailer', 'List-Id', 'X-Atmos-Category', 'x-atmos-category'])
      assert.ok(HEADER_NAME.test(ok), ok)
    for (const bad of [
      'From',
      'fROM',
      'DKIM-Signature',
      'Content-Type',
      'X-Atmos-Member',
      'Bad:Name',
      'a'.repeat(77),
    ]) {
      assert.ok(!HEADER_NAME.test(bad), bad)
    }
  })
})

describe('the HTTP send API', () => {
  let h: Harness
  let alice: AddedMember
  let aliceKey: string
  let dns: TestDnsServer
  let base: string
  /** Every error code a test saw, checked against the OpenAPI document at the end. */
  const seenCodes = new Set<string>()

  before(async () => {
    h = await startSubmission({
      ATMOS_RELAY_API_ENABLED: 'true',
      ATMOS_RELAY_API_PORT: '0',
      ATMOS_RELAY_API_RATE_LIMIT: String(RATE_LIMIT),
      ATMOS_RELAY_SUBMISSION_MAX_RECIPIENTS: '5',
    })
    base = `http://127.0.0.1:${h.submission.addresses.api!.port}`
    alice = await createMember(h, 'member.example')
    aliceKey = (await issueApiKey(h.sql, { did: alice.did, domain: alice.domain })).key
    dns = new TestDnsServer({
      ...dkimZone(alice),
      'pool1._domainkey.pool.example': { TXT: [`v=DKIM1; k=rsa; p=${await poolPublicKey(h.sql)}`] },
      '_dmarc.member.example': { TXT: ['v=DMARC1; p=reject'] },
      'member.example': { TXT: ['v=spf1 -all'] },
    })
    await dns.start()
  })
  after(async () => {
    await dns?.close()
    await h?.close()
  })

  // biome-ignore lint/suspicious/noExplicitAny: answers are walked as JSON, their shape is what is asserted
  type Reply = { status: number; body: any; headers: Headers }
  async function send(body: unknown, opts: { key?: string | null; headers?: Record<string, string> } = {}) {
    const key = opts.key === undefined ? aliceKey : opts.key
    const res = await fetch(`${base}/v1/send`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...opts.headers,
      },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    })
    const reply: Reply = { status: res.status, body: await res.json(), headers: res.headers }
    if (reply.body?.error?.code) seenCodes.add(reply.body.error.code)
    return reply
  }
  const spoolCount = async () => (await spooled(h.sql)).length
  const message = (extra: Record<string, unknown> = {}) => ({
    from: 'Alice <alice@member.example>'.replace(/^.*<|>$/g, ''),
    to: 'x@dest.example',
    subject: 'Hello',
    text: 'Hi there\n',
    ...extra,
  })

  async function verify(body: Buffer) {
    const auth = await authenticate(body, {
      ip: '198.51.100.7',
      helo: 'relay.pool.example',
      sender: 'b@bounces.pool.example',
      mta: 'mx.dest.example',
      resolver: dnsResolverFor(dns.address) as never,
    })
    return auth.dkim.results.map((r) => [r.signingDomain, r.selector, r.status.result])
  }

  it('sends with the same outcome as SMTP: same added headers, same three signatures passing, unsubscribe for a bulk category', async () => {
    const before = await spoolCount()
    const res = await send(
      message({
        from: { name: 'Alice', address: 'alice@member.example' },
        to: ['x@dest.example', 'y@dest.example'],
        category: 'newsletter',
        html: '<p>Hi there</p>',
        attachments: [
          { filename: 'a.txt', content: Buffer.from('attached').toString('base64'), contentType: 'text/plain' },
        ],
        headers: { 'X-Campaign': 'spring' },
      }),
    )
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual(
      res.body.accepted.map((a: { recipient: string }) => a.recipient),
      ['x@dest.example', 'y@dest.example'],
    )
    assert.deepEqual(res.body.rejected, [])
    const rows = (await spooled(h.sql)).slice(before)
    assert.deepEqual(
      rows.map((r) => r.id).sort(),
      res.body.accepted.map((a: { messageId: string }) => a.messageId).sort(),
    )

    // The same message through SMTP: MailComposer's bytes, submitted raw.
    const raw = await new MailComposer({
      from: { name: 'Alice', address: 'alice@member.example' },
      to: ['x@dest.example', 'y@dest.example'],
      subject: 'Hello',
      text: 'Hi there\n',
      html: '<p>Hi there</p>',
      headers: { 'X-Campaign': 'spring', 'X-Atmos-Category': 'newsletter' },
      attachments: [{ filename: 'a.txt', content: Buffer.from('attached'), contentType: 'text/plain' }],
      newline: 'win',
    })
      .compile()
      .build()
    await submitRaw(h.port, alice, { from: 'alice@member.example', to: ['x@dest.example', 'y@dest.example'] }, raw)
    const smtpRows = (await spooled(h.sql)).slice(before + 2)
    assert.equal(smtpRows.length, 2)

    const shape = (body: Buffer) => {
      const parsed = parseMessage(body)
      const get = (name: string) => parsed.fields.filter((f) => f.key === name).map(fieldValue)
      return {
        names: parsed.fields
          .map((f) => f.key)
          .filter((k) => k !== 'received')
          .sort(),
        did: get(MEMBER_DID_HEADER.toLowerCase()),
        feedback: get('feedback-id'),
        unsubscribePost: get('list-unsubscribe-post'),
        unsubscribe: get('list-unsubscribe').length,
        category: get('x-atmos-category'),
        from: get('from'),
      }
    }
    const api = shape(rows[0]!.body)
    const smtp = shape(smtpRows[0]!.body)
    assert.deepEqual(api, smtp)
    assert.deepEqual(api.did, [alice.did])
    assert.deepEqual(api.unsubscribePost, ['List-Unsubscribe=One-Click'])
    assert.equal(api.unsubscribe, 1)
    assert.deepEqual(api.category, [], 'the category header is read and removed, as for SMTP')
    const signatures = [
      ['member.example', 'atmos1r', 'pass'],
      ['member.example', 'atmos1e', 'pass'],
      [POOL_DOMAIN, 'pool1', 'pass'],
    ]
    for (const row of [...rows, ...smtpRows]) assert.deepEqual(await verify(row.body), signatures)
    const [category] = await h.sql<{ category: string }[]>`select category from messages where id = ${rows[0]!.id}`
    assert.equal(category!.category, 'newsletter')
    assert.match(
      parseMessage(rows[0]!.body)
        .fields.find((f) => f.key === 'received')!
        .raw.toString(),
      /with HTTP id/,
    )
  })

  it('rejects suppressed and malformed recipients as SMTP refuses them, and sends to the rest', async () => {
    await h.sql`
      insert into suppressions (member_id, address, reason) values (${alice.id}, 'gone@dest.example', 'hard_bounce')`
    const before = await spoolCount()
    const res = await send(message({ to: ['gone@dest.example', 'ok@dest.example'], cc: 'bad"quote@dest.example' }))
    assert.equal(res.status, 200)
    assert.deepEqual(
      res.body.accepted.map((a: { recipient: string }) => a.recipient),
      ['ok@dest.example'],
    )
    assert.equal(res.body.rejected.length, 2)
    assert.equal(res.body.rejected[0].recipient, 'gone@dest.example')
    assert.match(res.body.rejected[0].reason, /suppression list .* it bounced permanently/)
    assert.equal(res.body.rejected[1].recipient, 'bad"quote@dest.example')
    assert.equal(await spoolCount(), before + 1)

    const smtp = await refusal(
      submitRaw(
        h.port,
        alice,
        { from: 'alice@member.example', to: ['gone@dest.example'] },
        'From: alice@member.example\r\n\r\nx\r\n',
      ),
    )
    assert.equal(smtp.responseCode, 550)
    assert.ok(smtp.response!.includes(res.body.rejected[0].reason), 'the same refusal text as SMTP')

    // Only rejected: still a 200, nothing spooled.
    const none = await send(message({ to: 'gone@dest.example' }))
    assert.equal(none.status, 200)
    assert.deepEqual(none.body.accepted, [])
    assert.equal(await spoolCount(), before + 1)
  })

  it('AUTH_FAILED for a missing, malformed, unknown or revoked key', async () => {
    const bob = await createMember(h, 'bob.example')
    const bobKey = (await issueApiKey(h.sql, { did: bob.did, domain: bob.domain })).key
    await revokeApiKey(h.sql, { did: bob.did, domain: bob.domain })
    const unknown = `atmos_${'0'.repeat(16)}_${'A'.repeat(43)}`
    const wrongSecret = `${aliceKey.slice(0, -1)}${aliceKey.endsWith('A') ? 'B' : 'A'}`
    for (const key of [null, 'nonsense', unknown, wrongSecret, bobKey]) {
      const res = await send(message(), { key })
      assert.equal(res.status, 401, String(key))
      assert.equal(res.body.error.code, 'AUTH_FAILED')
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/)
    }
  })

  it('MEMBER_SUSPENDED, DOMAIN_NOT_VERIFIED and DOMAIN_MISMATCH, as SMTP admission decides', async () => {
    const carol = await createMember(h, 'carol.example')
    const key = (await issueApiKey(h.sql, { did: carol.did, domain: carol.domain })).key
    const from = { from: 'c@carol.example' }

    const mismatch = await send(message({ from: 'c@member.example' }), { key })
    assert.equal(mismatch.status, 403)
    assert.deepEqual(mismatch.body.error, {
      code: 'DOMAIN_MISMATCH',
      message: 'from must be an address at carol.example: this API key sends only as it',
      field: 'from',
    })
    assert.equal(
      (await send(message({ from: 'c@sub.carol.example' }), { key })).status,
      200,
      'a subdomain is the domain',
    )

    await setHolds(h.sql, carol.did, carol.domain, false)
    const unverified = await send(message(from), { key })
    assert.equal(unverified.status, 403)
    assert.equal(unverified.body.error.code, 'DOMAIN_NOT_VERIFIED')
    await setHolds(h.sql, carol.did, carol.domain, true)

    await h.sql`update domains set status = 'suspended', status_reason = 'complaints' where id = ${carol.domainId}`
    const suspended = await send(message(from), { key })
    assert.equal(suspended.status, 403)
    assert.equal(suspended.body.error.code, 'MEMBER_SUSPENDED')
    await h.sql`update domains set status = 'active' where id = ${carol.domainId}`
    await h.sql`update members set status = 'suspended' where id = ${carol.id}`
    assert.equal((await send(message(from), { key })).body.error.code, 'MEMBER_SUSPENDED')
  })

  it('INVALID_REQUEST naming the field, for refused headers, unknown fields and hostile JSON', async () => {
    const before = await spoolCount()
    const cases: Array<[unknown, string | undefined]> = [
      [message({ headers: { 'DKIM-Signature': 'v=1' } }), 'headers.DKIM-Signature'],
      [message({ headers: { from: 'x@evil.example' } }), 'headers.from'],
      [message({ headers: { 'X-Atmos-Member-DID': 'did:plc:x' } }), 'headers.X-Atmos-Member-DID'],
      [message({ headers: { 'ARC-Seal': 'x' } }), 'headers.ARC-Seal'],
      [message({ headers: { Received: 'x' } }), 'headers.Received'],
      [message({ headers: { 'X-Ok': 'a\r\nBcc: x@y.example' } }), 'headers.X-Ok'],
      [message({ subject: 'a\nb' }), 'subject'],
      [message({ bcc: 'x@y.example' }), 'bcc'],
      [message({ text: undefined }), 'text'],
      [message({ to: [] }), 'to'],
      [
        message({ to: ['a@d.example', 'b@d.example', 'c@d.example', 'd@d.example', 'e@d.example', 'f@d.example'] }),
        'to',
      ],
      [message({ category: 'Not A Category' }), 'category'],
      [message({ attachments: [{ filename: 'x', content: 'not base64!' }] }), 'attachments[0].content'],
      [message({ from: 'x@sub.member.example.' }), 'from'],
      [message({ from: { name: 'paypal.com <x@paypal.com>', address: 'a@member.example' } }), 'from'],
      ['{"from":', undefined],
      ['[]', undefined],
      ['['.repeat(100_000), undefined],
      [JSON.stringify(message()).replace('{', '{"__proto__":{"admin":true},'), '__proto__'],
    ]
    for (const [body, field] of cases) {
      const res = await send(body)
      assert.equal(res.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${JSON.stringify(res.body)}`)
      assert.equal(res.body.error.code, 'INVALID_REQUEST')
      assert.equal(res.body.error.field, field, JSON.stringify(res.body))
    }
    const plain = await send('x', { headers: { 'content-type': 'text/plain' } })
    assert.equal(plain.body.error.field, 'Content-Type')
    assert.equal(await spoolCount(), before, 'nothing was spooled')
  })

  it('PAYLOAD_TOO_LARGE before reading a body over 1 MiB, declared or streamed', async () => {
    const big = JSON.stringify(message({ text: 'x'.repeat(1024 * 1024) }))
    const declared = await send(big)
    assert.equal(declared.status, 413)
    assert.equal(declared.body.error.code, 'PAYLOAD_TOO_LARGE')

    // Chunked: no Content-Length; the server cuts it off at the limit.
    const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        `${base}/v1/send`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${aliceKey}` },
        },
        (res) => {
          let body = ''
          res.on('data', (c) => {
            body += c
          })
          res.on('end', () => resolve({ status: res.statusCode!, body }))
        },
      )
      req.on('error', reject)
      let sent = 0
      const chunk = Buffer.alloc(64 * 1024, 0x20)
      const write = () => {
        while (sent < 2 * 1024 * 1024) {
          sent += chunk.length
          if (!req.write(chunk)) return req.once('drain', write)
        }
        req.end()
      }
      write()
    })
    assert.equal(streamed.status, 413)
    assert.equal(JSON.parse(streamed.body).error.code, 'PAYLOAD_TOO_LARGE')
  })

  it('RATE_LIMITED with Retry-After when the daily cap is reached, without spooling', async () => {
    const dave = await createMember(h, 'dave.example', { activatedDaysAgo: 0 })
    const key = (await issueApiKey(h.sql, { did: dave.did, domain: dave.domain })).key
    const [{ day }] = (await h.sql<
      { day: string }[]
    >`select to_char(now() at time zone 'UTC', 'YYYY-MM-DD') as day`) as unknown as [{ day: string }]
    // One recipient short of the first warming tier's 50.
    await h.sql`
      insert into send_volume (member_id, domain_id, day, recipients, messages)
      values (${dave.id}, ${dave.domainId}, ${day}, 49, 49)`
    const before = await spoolCount()
    const two = await send(message({ from: 'd@dave.example', to: ['a@dest.example', 'b@dest.example'] }), { key })
    assert.equal(two.status, 429)
    assert.equal(two.body.error.code, 'RATE_LIMITED')
    const retry = Number(two.headers.get('retry-after'))
    assert.ok(retry > 0 && retry <= 86_400, String(retry))
    assert.equal(await spoolCount(), before)
    assert.equal((await send(message({ from: 'd@dave.example' }), { key })).status, 200, 'one still fits')
    assert.equal((await send(message({ from: 'd@dave.example' }), { key })).status, 429)
  })

  it('RATE_LIMITED with Retry-After past the per-key request rate', async () => {
    const erin = await createMember(h, 'erin.example')
    const key = (await issueApiKey(h.sql, { did: erin.did, domain: erin.domain })).key
    let limited: Reply | undefined
    for (let i = 0; i < RATE_LIMIT + 1 && !limited; i++) {
      const res = await send('{}', { key })
      if (res.status === 429) limited = res
    }
    assert.ok(limited, 'the limit was reached')
    assert.equal(limited.body.error.code, 'RATE_LIMITED')
    assert.ok(Number(limited.headers.get('retry-after')) >= 1)
    // Another key is not affected.
    assert.equal((await send('{}')).status, 400)
  })

  it('Idempotency-Key: a retry returns the first answer and sends once; another body is refused; duplicates at once send once', async () => {
    const before = await spoolCount()
    const headers = { 'idempotency-key': 'order-1234' }
    const first = await send(message({ to: 'once@dest.example' }), { headers })
    assert.equal(first.status, 200)
    const again = await send(message({ to: 'once@dest.example' }), { headers })
    assert.equal(again.status, 200)
    assert.deepEqual(again.body, first.body)
    assert.equal(again.headers.get('idempotent-replayed'), 'true')
    assert.equal(await spoolCount(), before + 1)

    const other = await send(message({ to: 'twice@dest.example' }), { headers })
    assert.equal(other.status, 422)
    assert.equal(other.body.error.code, 'IDEMPOTENCY_KEY_REUSED')

    const concurrent = await Promise.all(
      Array.from({ length: 6 }, () =>
        send(message({ to: 'race@dest.example' }), { headers: { 'idempotency-key': 'race-1' } }),
      ),
    )
    for (const r of concurrent) {
      assert.equal(r.status, 200)
      assert.deepEqual(r.body, concurrent[0]!.body)
    }
    const race = await h.sql`
      select 1 from message_recipients where address = 'race@dest.example'`
    assert.equal(race.length, 1, 'sent exactly once')

    const bad = await send(message(), { headers: { 'idempotency-key': 'é'.repeat(3) } })
    assert.equal(bad.body.error.field, 'Idempotency-Key')

    // Past the window the key is free again.
    await h.sql`update send_api_idempotency set created_at = now() - interval '25 hours' where idempotency_key = 'order-1234'`
    const later = await send(message({ to: 'twice@dest.example' }), { headers })
    assert.equal(later.status, 200)
    assert.notDeepEqual(later.body, first.body)
  })

  it('SERVICE_UNAVAILABLE with Retry-After when there is no key to sign with', async () => {
    const frank = await createMember(h, 'frank.example')
    const key = (await issueApiKey(h.sql, { did: frank.did, domain: frank.domain })).key
    await h.sql`update dkim_keys set status = 'retired' where domain_id = ${frank.domainId}`
    const res = await send(message({ from: 'f@frank.example' }), { key })
    assert.equal(res.status, 503)
    assert.equal(res.body.error.code, 'SERVICE_UNAVAILABLE')
    assert.equal(res.headers.get('retry-after'), '60')
  })

  it('INTERNAL when the database refuses under it, and NOT_FOUND for other routes', async () => {
    const notFound = await fetch(`${base}/v1/other`)
    assert.equal(notFound.status, 404)
    seenCodes.add(((await notFound.json()) as { error: { code: string } }).error.code)
    await h.sql`alter table send_api_idempotency rename to send_api_idempotency_away`
    try {
      const res = await send(message(), { headers: { 'idempotency-key': 'fault-1' } })
      assert.equal(res.status, 500)
      assert.equal(res.body.error.code, 'INTERNAL')
      assert.doesNotMatch(JSON.stringify(res.body), /send_api_idempotency|relation/, 'no internals in the answer')
    } finally {
      await h.sql`alter table send_api_idempotency_away rename to send_api_idempotency`
    }
  })

  it('serves an OpenAPI 3.1 document that matches the implementation', async () => {
    const res = await fetch(`${base}/v1/openapi.json`)
    assert.equal(res.status, 200)
    // biome-ignore lint/suspicious/noExplicitAny: the document is walked as JSON
    const doc = (await res.json()) as any
    assert.equal(doc.openapi, '3.1.0')
    assert.deepEqual(Object.keys(doc.paths).sort(), ['/v1/openapi.json', '/v1/send'])
    // Every error code the document lists was produced by a test above.
    const documented: string[] = doc.components.schemas.Error.properties.error.properties.code.enum
    assert.deepEqual([...seenCodes].sort(), [...documented].sort())
    // And each was counted on /metrics by code.
    for (const code of documented) assert.ok(h.submission.metrics.apiAnswers.value({ code }) > 0, code)
    assert.ok(h.submission.metrics.apiAnswers.value({ code: 'OK' }) > 0)

    // The document's request schema accepts and refuses what zod does.
    const ajv = new Ajv2020({ strict: false, validateFormats: false })
    const validate = ajv.compile(doc.components.schemas.SendRequest)
    const zod = sendRequestSchema({ maxRecipients: 5, maxAttachments: 10, bodyLimit: 1024 * 1024 })
    const samples: unknown[] = [
      message(),
      message({ to: ['a@d.example', 'b@d.example'], cc: 'c@d.example', html: '<b>x</b>' }),
      message({ headers: { 'X-Atmos-Category': 'newsletter', 'X-Campaign': 'a' } }),
      message({ headers: { 'dkim-signature': 'x' } }),
      message({ headers: { 'X-Atmos-Ref': 'x' } }),
      message({ headers: { 'Content-Type': 'x' } }),
      message({ headers: { 'X:y': 'x' } }),
      message({ text: undefined }),
      message({ text: undefined, html: '<p>x</p>' }),
      message({ unknown: 1 }),
      message({ category: 'login-link' }),
      message({ category: 'UPPER' }),
      message({ attachments: [{ filename: 'a', content: 'YWJj' }] }),
      message({ attachments: [{ filename: 'a', content: 'YWJj', contentType: 'not a type' }] }),
      message({ to: Array.from({ length: 6 }, (_, i) => `r${i}@d.example`) }),
      message({ from: { name: 'A', address: 'a@member.example' } }),
      message({ from: { name: 'A' } }),
      message({ subject: 'a\r\nb' }),
      message({ headers: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`X-H${i}`, 'v'])) }),
      message({ headers: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`X-H${i}`, 'v'])) }),
      {},
    ]
    for (const sample of samples) {
      assert.equal(validate(sample), zod.safeParse(sample).success, JSON.stringify(sample))
    }
  })
})
