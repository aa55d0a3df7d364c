import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { TestDnsServer } from '@atmos/testkit'
import { createSecureDnsResolver, type SecureDnsResolver } from '../src/index.ts'

// The AD-bit aware queries DANE needs, against the loopback DNS server playing a validating
// resolver: names marked secure come back with the AD bit.

let dns: TestDnsServer
let resolver: SecureDnsResolver

before(async () => {
  dns = new TestDnsServer({
    'signed.example': { MX: [{ priority: 10, exchange: 'mx.signed.example' }], secure: true },
    'unsigned.example': { MX: [{ priority: 5, exchange: 'mx.unsigned.example' }] },
    '_25._tcp.mx.signed.example': {
      TLSA: [
        { usage: 3, selector: 1, matchingType: 1, data: 'ab'.repeat(32) },
        { usage: 2, selector: 0, matchingType: 2, data: 'cd'.repeat(64) },
      ],
      secure: true,
    },
    'nodata.example': { A: ['127.0.0.1'], secure: true },
    'broken.example': { behaviour: 'servfail' },
    'silent.example': { behaviour: 'timeout' },
  })
  await dns.start()
  resolver = createSecureDnsResolver({ servers: ['127.0.0.1'], port: dns.port, timeoutMs: 300, tries: 1 })
})

after(async () => {
  await dns.close()
})

describe('secure DNS queries', () => {
  it('reads TLSA records and the AD bit', async () => {
    const answer = await resolver.resolveTlsa('_25._tcp.mx.signed.example')
    assert.equal(answer.authenticated, true)
    assert.deepEqual(
      answer.records.map((r) => [r.usage, r.selector, r.matchingType, r.data.toString('hex')]),
      [
        [3, 1, 1, 'ab'.repeat(32)],
        [2, 0, 2, 'cd'.repeat(64)],
      ],
    )
    const q = dns.queries.at(-1)
    assert.equal(q?.type, 'TLSA')
  })

  it('tells authenticated MX answers from unauthenticated ones', async () => {
    assert.deepEqual(await resolver.resolveMx('signed.example'), {
      records: [{ exchange: 'mx.signed.example', priority: 10 }],
      authenticated: true,
    })
    assert.deepEqual(await resolver.resolveMx('unsigned.example'), {
      records: [{ exchange: 'mx.unsigned.example', priority: 5 }],
      authenticated: false,
    })
  })

  it('answers an absent name or type with no records', async () => {
    assert.deepEqual(await resolver.resolveTlsa('_25._tcp.nodata.example'), { records: [], authenticated: false })
    assert.deepEqual(await resolver.resolveTlsa('nodata.example'), { records: [], authenticated: true })
  })

  it('fails with the code of a server failure or a timeout', async () => {
    await assert.rejects(resolver.resolveTlsa('broken.example'), { code: 'ESERVFAIL' })
    await assert.rejects(resolver.resolveTlsa('silent.example'), { code: 'ETIMEOUT' })
  })
})
