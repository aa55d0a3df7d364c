import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { rootCertificates } from 'node:tls'
import { createLogger } from '@atmos/runtime'
import {
  deletePrefix,
  MtaStsServer,
  TestDnsServer,
  testCertificateAuthority,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { createDnsResolver } from '@atmos/verify'
import type { Redis } from 'ioredis'
import { AddressPolicy } from '../src/delivery/address-policy.ts'
import { MtaSts, mxMatches, parsePolicy } from '../src/delivery/tls/mta-sts.ts'
import { hasTlsRequiredNo } from '../src/delivery/tls/tls-required.ts'
import { eventually } from './delivery-helpers.ts'

// MTA-STS discovery, fetch and cache against a loopback DNS server, an HTTPS policy server
// with a certificate from a test CA, and the real Redis.

const ca = testCertificateAuthority()
const DOMAINS = [
  'a',
  'internal',
  'restart',
  'redirect',
  'html',
  'big',
  'bad',
  'slow',
  'rotate',
  'none',
  'busy',
  'refresh',
].map((d) => `${d}.example`)

let dns: TestDnsServer
let server: MtaStsServer
let redis: Redis
const prefix = testRedisPrefix('mta-sts')

before(async () => {
  // `mta-sts.wrongcert.example` resolves to the server but its certificate does not name it.
  server = new MtaStsServer(ca.issue(DOMAINS.map((d) => `mta-sts.${d}`)))
  await server.start()
  dns = new TestDnsServer()
  for (const d of [...DOMAINS, 'wrongcert.example']) dns.set(`mta-sts.${d}`, { A: ['127.0.0.1'] })
  await dns.start()
  redis = testRedis()
})

after(async () => {
  await deletePrefix(redis, prefix)
  await redis.quit()
  await dns.close()
  await server.close()
})

function sts(opts: { recheckMs?: number; allowLoopback?: boolean } = {}): MtaSts {
  return new MtaSts({
    dns: createDnsResolver({ servers: [dns.address], timeoutMs: 5000, tries: 1 }),
    redis,
    prefix,
    port: server.port,
    timeoutMs: 1000,
    ca: [...rootCertificates, ca.cert],
    logger: createLogger('test', 'silent'),
    recheckMs: opts.recheckMs ?? 0,
    addressPolicy: new AddressPolicy(opts.allowLoopback === false ? [] : ['127.0.0.0/8']),
  })
}

function publish(domain: string, id: string, policy: string | object | undefined) {
  dns.set(`_mta-sts.${domain}`, { TXT: [`v=STSv1; id=${id}`] })
  if (policy === undefined) server.policies.delete(domain)
  else server.policies.set(domain, policy as string)
}

const ENFORCE = 'version: STSv1\r\nmode: enforce\r\nmx: mx.a.example\r\nmx: *.b.example\r\nmax_age: 604800\r\n'

describe('MTA-STS policies', () => {
  it('fetches a published policy', async () => {
    publish('a.example', '1', ENFORCE)
    const policy = await sts().policy('a.example')
    assert.equal(policy?.mode, 'enforce')
    assert.deepEqual(policy?.mx, ['mx.a.example', '*.b.example'])
    assert.equal(policy?.maxAgeS, 604800)
  })

  it('keeps an enforce policy across a restart after the TXT record and the policy are gone (RFC 8461 5.1)', async () => {
    publish('restart.example', '1', ENFORCE)
    assert.equal((await sts().policy('restart.example'))?.mode, 'enforce')
    dns.set('_mta-sts.restart.example', undefined)
    server.policies.delete('restart.example')
    // A fresh instance: nothing in its memory, the policy comes back from Redis.
    const afterRestart = await sts().policy('restart.example')
    assert.equal(afterRestart?.mode, 'enforce')
    const ttl = await redis.pttl(`${prefix}:mta-sts:restart.example`)
    assert.ok(ttl > 600_000_000 && ttl <= 604_800_000, `TTL is max_age: ${ttl}`)
  })

  it('fetches again when the TXT id changes', async () => {
    publish('rotate.example', '1', ENFORCE)
    const first = sts()
    assert.equal((await first.policy('rotate.example'))?.mode, 'enforce')
    publish('rotate.example', '2', ENFORCE.replace('enforce', 'testing'))
    assert.equal((await first.policy('rotate.example'))?.mode, 'testing')
  })

  it('mode none withdraws a policy', async () => {
    publish('none.example', '1', ENFORCE)
    const cache = sts()
    assert.equal((await cache.policy('none.example'))?.mode, 'enforce')
    publish('none.example', '2', 'version: STSv1\nmode: none\nmax_age: 86400\n')
    assert.equal(await cache.policy('none.example'), undefined)
  })

  it('follows no redirect, takes only text/plain, bounds the size and the time', async () => {
    publish('redirect.example', '1', { status: 302, location: 'https://mta-sts.a.example/.well-known/mta-sts.txt' })
    publish('html.example', '1', { body: ENFORCE, contentType: 'text/html' })
    publish('big.example', '1', `${ENFORCE}${'# padding\r\n'.repeat(7000)}`)
    publish('slow.example', '1', { body: ENFORCE, delayMs: 3000 })
    const cache = sts()
    for (const d of ['redirect.example', 'html.example', 'big.example', 'slow.example']) {
      assert.equal(await cache.policy(d), undefined, d)
    }
  })

  it('never fetches a policy from an internal address the delivery policy refuses', async () => {
    publish('internal.example', '1', ENFORCE)
    assert.equal(await sts({ allowLoopback: false }).policy('internal.example'), undefined)
    assert.ok(!server.requests.some((r) => r.host === 'mta-sts.internal.example'), 'no request reached the server')
    // The same host with loopback allowed (as tests and the local stack do) is fetched.
    assert.equal((await sts().policy('internal.example'))?.mode, 'enforce')
  })

  it('refuses a policy host whose certificate does not name it', async () => {
    publish('wrongcert.example', '1', ENFORCE)
    assert.equal(await sts().policy('wrongcert.example'), undefined)
    assert.ok(!server.requests.some((r) => r.host === 'mta-sts.wrongcert.example'))
  })

  it('ignores an invalid policy', async () => {
    publish('bad.example', '1', 'version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n')
    assert.equal(await sts().policy('bad.example'), undefined)
  })

  it('refreshes a policy past half its max_age, under the same id', async () => {
    publish('refresh.example', '1', ENFORCE.replace('max_age: 604800', 'max_age: 1'))
    const cache = sts()
    assert.equal((await cache.policy('refresh.example'))?.mode, 'enforce')
    const fetches = () => server.requests.filter((r) => r.host === 'mta-sts.refresh.example').length
    assert.equal(fetches(), 1)
    // Within a second the policy is past half its life: the next look fetches it again.
    await eventually(async () => {
      await cache.policy('refresh.example')
      return fetches() >= 2 ? true : undefined
    })
  })

  it('concurrent deliveries to one domain share one fetch', async () => {
    publish('busy.example', '1', ENFORCE)
    const cache = sts()
    const got = await Promise.all(Array.from({ length: 10 }, () => cache.policy('busy.example')))
    assert.ok(got.every((p) => p?.mode === 'enforce'))
    assert.equal(server.requests.filter((r) => r.host === 'mta-sts.busy.example').length, 1)
  })

  it('asks nothing between TXT checks, for a domain without a policy too', async () => {
    const cache = sts({ recheckMs: 60_000 })
    assert.equal(await cache.policy('nothing.example'), undefined)
    const asked = dns.queries.length
    assert.equal(await cache.policy('nothing.example'), undefined)
    assert.equal(dns.queries.length, asked)
  })
})

describe('MTA-STS parsing and matching', () => {
  it('parses RFC 8461 policies and refuses bad ones', () => {
    assert.deepEqual(parsePolicy('version: STSv1\nmode: testing\nmx: MX.Example.com.\nmax_age: 99999999999'), {
      ok: false,
      reason: 'policy max_age missing or not a number',
    })
    const ok = parsePolicy('version: STSv1\nmode: testing\nmx: MX.Example.com.\nmax_age: 999999999')
    assert.deepEqual(ok, { ok: true, policy: { mode: 'testing', mx: ['mx.example.com'], maxAgeS: 31_557_600 } })
    assert.equal(parsePolicy('version: STSv2\nmode: enforce\nmx: a\nmax_age: 1').ok, false)
    assert.equal(parsePolicy('version: STSv1\nmode: strict\nmx: a\nmax_age: 1').ok, false)
  })

  it('matches MX hosts exactly or by a one-label wildcard', () => {
    assert.ok(mxMatches(['mx.a.example'], 'MX.A.example.'))
    assert.ok(mxMatches(['*.b.example'], 'mx1.b.example'))
    assert.ok(!mxMatches(['*.b.example'], 'b.example'))
    assert.ok(!mxMatches(['*.b.example'], 'x.mx1.b.example'))
    assert.ok(!mxMatches(['mx.a.example'], 'mx.a.example.evil'))
  })
})

describe('TLS-Required header', () => {
  it('is found in the header block only, folded or not', () => {
    assert.ok(hasTlsRequiredNo(Buffer.from('From: a@b\r\nTLS-Required: No\r\n\r\nbody')))
    assert.ok(hasTlsRequiredNo(Buffer.from('From: a@b\r\ntls-required:\r\n no\r\n\r\nbody')))
    assert.ok(!hasTlsRequiredNo(Buffer.from('From: a@b\r\n\r\nTLS-Required: No\r\n')))
    assert.ok(!hasTlsRequiredNo(Buffer.from('From: a@b\r\nTLS-Required: Yes\r\n\r\n')))
  })
})
