import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { closedPort, TestDnsServer } from '@atmos/testkit'
import { createDnsResolver, describeDnsError, errorCode, isAbsence } from '../src/index.ts'
import { resolverFor } from './helpers.ts'

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  assert.fail('expected the query to fail')
}

describe('DNS resolver over the loopback server', () => {
  const server = new TestDnsServer({
    'Mixed.Case.test': {
      A: ['192.0.2.10'],
      AAAA: ['2001:db8::10'],
      TXT: [['v=spf1 ', 'ip4:192.0.2.0/24 ', '-all'], 'second'],
      MX: [{ priority: 0, exchange: '.' }],
    },
    'alias.test': { CNAME: 'target.test' },
    'target.test': { TXT: ['delegated'] },
    'big.test': { TXT: [Array.from({ length: 500 }, (_, i) => `s${i}`.padEnd(100, 'x'))] },
    'servfail.test': { behaviour: 'servfail' },
    'refused.test': { behaviour: 'refused' },
    'timeout.test': { behaviour: 'timeout' },
    'garbage.test': { behaviour: 'garbage' },
    'partial.test': { TXT: ['fine'], behaviour: { MX: 'servfail' } },
  })
  let dns: ReturnType<typeof resolverFor>
  before(async () => {
    await server.start()
    dns = resolverFor(server)
  })
  after(() => server.close())

  it('answers A, AAAA, MX (including the null MX) and split TXT, names case-insensitively', async () => {
    assert.deepEqual(await dns.resolve4('mixed.case.TEST'), ['192.0.2.10'])
    assert.deepEqual(await dns.resolve6('mixed.case.test'), ['2001:db8::10'])
    assert.deepEqual(await dns.resolveMx('mixed.case.test'), [{ priority: 0, exchange: '' }])
    assert.deepEqual(await dns.resolveTxt('mixed.case.test'), [['v=spf1 ', 'ip4:192.0.2.0/24 ', '-all'], ['second']])
    assert.deepEqual(await dns.resolve('mixed.case.test', 'TXT'), await dns.resolveTxt('mixed.case.test'))
  })

  it('follows a CNAME within the zone', async () => {
    assert.deepEqual(await dns.resolveTxt('alias.test'), [['delegated']])
    assert.deepEqual(await dns.resolveCname('alias.test'), ['target.test'])
  })

  it('serves a 500-string TXT record (over TCP after a truncated UDP answer)', async () => {
    const [record] = await dns.resolveTxt('big.test')
    assert.equal(record?.length, 500)
    assert.ok(server.queries.some((q) => q.name === 'big.test' && q.transport === 'tcp'))
  })

  it('classifies NXDOMAIN and NODATA as absence', async () => {
    const nx = await failure(dns.resolveTxt('missing.test'))
    assert.equal(errorCode(nx), 'ENOTFOUND')
    assert.equal(isAbsence(nx), true)
    assert.match(describeDnsError(nx), /NXDOMAIN/)
    const nodata = await failure(dns.resolveMx('alias.test'))
    assert.equal(errorCode(nodata), 'ENODATA')
    assert.equal(isAbsence(nodata), true)
  })

  it('classifies SERVFAIL, REFUSED, timeouts and garbage as temporary, never absence', async () => {
    const cases = [
      ['servfail.test', 'ESERVFAIL', /SERVFAIL/],
      ['refused.test', 'EREFUSED', /REFUSED/],
      ['timeout.test', 'ETIMEOUT', /timed out/],
      ['garbage.test', 'EBADRESP', /malformed/],
    ] as const
    for (const [name, code, words] of cases) {
      const err = await failure(dns.resolveTxt(name))
      assert.equal(errorCode(err), code, name)
      assert.equal(isAbsence(err), false, name)
      assert.match(describeDnsError(err), words)
    }
  })

  it('misbehaves per type when asked to', async () => {
    assert.deepEqual(await dns.resolveTxt('partial.test'), [['fine']])
    assert.equal(errorCode(await failure(dns.resolveMx('partial.test'))), 'ESERVFAIL')
  })

  it('sees zone changes at once (TTL 0: nothing is cached)', async () => {
    server.set('changing.test', { TXT: ['one'] })
    assert.deepEqual(await dns.resolveTxt('changing.test'), [['one']])
    server.behave('changing.test', 'servfail')
    assert.equal(errorCode(await failure(dns.resolveTxt('changing.test'))), 'ESERVFAIL')
    server.behave('changing.test', undefined)
    assert.deepEqual(await dns.resolveTxt('changing.test'), [['one']])
    server.set('changing.test', undefined)
    assert.equal(errorCode(await failure(dns.resolveTxt('changing.test'))), 'ENOTFOUND')
  })

  it('reports an unreachable server as temporary', async () => {
    const port = await closedPort()
    const down = createDnsResolver({ servers: [`127.0.0.1:${port}`], timeoutMs: 300, tries: 1 })
    const err = await failure(down.resolveTxt('anything.test'))
    assert.equal(isAbsence(err), false)
    assert.match(errorCode(err), /ECONNREFUSED|ETIMEOUT/)
  })
})
