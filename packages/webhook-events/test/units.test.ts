import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  asDate,
  checkEventTypes,
  checkWebhookUrl,
  forbiddenAddress,
  formatSecret,
  newEventId,
  newSecret,
  parseSecret,
  signatureHeader,
  verifySignature,
  WebhookUrlError,
} from '../src/index.ts'

describe('webhook units', () => {
  it('event ids are msg_ and 26 Crockford characters, sorting by creation', () => {
    const a = newEventId(1_000)
    const b = newEventId(2_000)
    assert.match(a, /^msg_[0-9A-HJKMNP-TV-Z]{26}$/)
    assert.ok(a < b)
    assert.notEqual(newEventId(1_000), a)
  })

  it('signs as the spec says: base64 HMAC-SHA256 of id.timestamp.body, one per secret', () => {
    const s1 = newSecret()
    const s2 = newSecret()
    assert.deepEqual(parseSecret(formatSecret(s1)), s1)
    const body = '{"type":"test"}'
    const want = createHmac('sha256', s1).update(`msg_1.1700000000.${body}`).digest('base64')
    const header = signatureHeader([s1, s2], 'msg_1', 1_700_000_000, body)
    assert.equal(header.split(' ')[0], `v1,${want}`)
    const h = { id: 'msg_1', timestamp: '1700000000', signature: header }
    assert.ok(verifySignature(s2, h, body, { now: 1_700_000_000_000 }))
    assert.ok(!verifySignature(s1, h, `${body} `, { now: 1_700_000_000_000 }))
    assert.ok(!verifySignature(s1, h, body, { now: 1_700_001_000_000 }), 'a stale timestamp is refused')
    assert.throws(() => parseSecret('sk_abc'))
  })

  it('refuses every non-public address, IPv4 and IPv6, and passes public ones', () => {
    for (const ip of [
      '127.0.0.1',
      '10.0.0.1',
      '172.16.5.4',
      '192.168.1.1',
      '100.64.0.1',
      '169.254.169.254',
      '0.0.0.0',
      '224.0.0.1',
      '255.255.255.255',
      '::1',
      '::',
      '::ffff:10.0.0.1',
      '::ffff:1.1.1.1',
      '64:ff9b::a00:1',
      'fd00:ec2::254',
      'fe80::1',
      'ff02::1',
      '2002:7f00:1::',
    ]) {
      assert.ok(forbiddenAddress(ip), ip)
    }
    // Every public IPv4 address passes (a mapped-IPv6 rule must not swallow them all).
    for (const ip of ['93.184.215.14', '1.1.1.1', '8.8.8.8', '2606:4700:4700::1111', '2a00:1450:4001::200e'])
      assert.equal(forbiddenAddress(ip), undefined, ip)
  })

  it('checks endpoint URLs and event choices', () => {
    assert.equal(checkWebhookUrl(' https://Hooks.Example.net/a?b=1 '), 'https://hooks.example.net/a?b=1')
    for (const bad of [
      'http://x.example/',
      'https://u:p@x.example/',
      'https://x.example/#f',
      'https://10.1.1.1/',
      'https://intranet/',
    ]) {
      assert.throws(() => checkWebhookUrl(bad), WebhookUrlError, bad)
    }
    assert.equal(
      checkWebhookUrl('http://127.0.0.1:9/x', { allowHttp: true, allowPrivate: true }),
      'http://127.0.0.1:9/x',
    )
    assert.deepEqual(checkEventTypes(['label.changed', 'message.delivered', 'label.changed']), [
      'message.delivered',
      'label.changed',
    ])
    assert.throws(() => checkEventTypes([]))
    assert.throws(() => checkEventTypes(['message.delivered', 'test']))
  })

  it('reads timestamptz in both of the pool forms', () => {
    assert.equal(asDate('2026-12-07 07:39:34.1+00').toISOString(), '2026-12-07T07:39:34.100Z')
    assert.equal(asDate('2026-12-07 09:39:34+02').toISOString(), '2026-12-07T07:39:34.000Z')
    const d = new Date()
    assert.equal(asDate(d), d)
  })
})
