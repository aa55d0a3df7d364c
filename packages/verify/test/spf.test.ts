import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type DnsZone, TestDnsServer } from '@atmos/testkit'
import { type CheckResult, checkSpf } from '../src/index.ts'
import { expectCheck, serveZone } from './helpers.ts'

const spf = (record: string | string[]) => ({ TXT: [record] })

const zone: DnsZone = {
  'good.test': { TXT: ['some-verification=xyz', 'v=spf1 ip4:198.51.100.0/24 -all'] },
  'split.test': { TXT: [['v=spf1 ip4:198.51.100.0/24', ' include:_spf.split.test', ' -all']] },
  '_spf.split.test': spf('v=spf1 ip6:2001:db8:1::/48 -all'),
  'upper.test': spf('V=SPF1 ip4:198.51.100.0/24 -ALL'),
  'plus-all.test': spf('v=spf1 ip4:198.51.100.0/24 +all'),
  'bare-all.test': spf('v=spf1 all'),
  'ip4-any.test': spf('v=spf1 ip4:0.0.0.0/0 -all'),
  'ip6-any.test': spf('v=spf1 ip6:::/0 -all'),
  'include-chain.test': spf('v=spf1 include:middle.test -all'),
  'middle.test': spf('v=spf1 include:open.test ~all'),
  'open.test': spf('v=spf1 +all'),
  'redirect.test': spf('v=spf1 redirect=open.test'),
  'two.test': { TXT: ['v=spf1 -all', 'v=spf1 ip4:198.51.100.0/24 -all'] },
  'not-spf.test': { TXT: ['v=spf10 -all', 'hello'] },
  'mx-only.test': { MX: [{ priority: 10, exchange: 'mx.good.test' }] },
  'lookups.test': spf(`v=spf1 ${Array.from({ length: 11 }, (_, i) => `include:l${i}.test`).join(' ')} -all`),
  'void.test': spf('v=spf1 a:gone1.test a:gone2.test a:gone3.test -all'),
  'soft.test': spf('v=spf1 ip4:198.51.100.0/24 ~all'),
  'neutral.test': spf('v=spf1 ip4:198.51.100.0/24 ?all'),
  'no-all.test': spf('v=spf1 ip4:198.51.100.0/24'),
  'syntax.test': spf('v=spf1 ip4:198.51.100.0/24 frobnicate -all'),
  'servfail.test': { behaviour: 'servfail' },
  'refused.test': { behaviour: 'refused' },
  'timeout.test': { behaviour: 'timeout' },
  'garbage.test': { behaviour: 'garbage' },
  'include-servfail.test': spf('v=spf1 include:broken.test -all'),
  'broken.test': { behaviour: 'servfail' },
}
for (let i = 0; i < 11; i++) zone[`l${i}.test`] = spf('v=spf1 -all')

describe('SPF check', () => {
  const server = new TestDnsServer(zone)
  const dns = serveZone(server)
  const expect = (domain: string, outcome: CheckResult['outcome'], reason: RegExp) =>
    expectCheck(checkSpf(domain, dns()), 'spf', outcome, reason, domain)

  it('passes one -all record among other TXT records', async () => {
    const r = await expect('good.test', 'pass', /publishes one SPF record .* does not authorize arbitrary senders/)
    assert.deepEqual(r.warnings, [])
    assert.deepEqual(r.details.records, ['v=spf1 ip4:198.51.100.0/24 -all'])
  })

  it('joins a record split across strings without separators, and passes it', async () => {
    const r = await expect('split.test', 'pass', /one SPF record/)
    assert.deepEqual(r.details.records, ['v=spf1 ip4:198.51.100.0/24 include:_spf.split.test -all'])
  })

  it('matches v=spf1 case-insensitively', async () => {
    await expect('upper.test', 'pass', /one SPF record/)
  })

  it('fails +all', async () => {
    await expect('plus-all.test', 'fail', /SPF record ends in "\+all": anyone may send as this domain/)
  })

  it('fails a bare all (v=spf1 all)', async () => {
    await expect('bare-all.test', 'fail', /bare "all", which means \+all: anyone may send/)
  })

  it('fails ip4:0.0.0.0/0', async () => {
    await expect('ip4-any.test', 'fail', /authorizes "ip4:0\.0\.0\.0\/0".*192\.0\.2\.1: anyone may send/)
  })

  it('fails ip6:::/0, found with the IPv6 probe', async () => {
    await expect('ip6-any.test', 'fail', /authorizes "ip6:::\/0".*2001:db8::1: anyone may send/)
  })

  it('fails an include chain that reaches +all', async () => {
    await expect('include-chain.test', 'fail', /through "include:middle\.test".*anyone may send/)
  })

  it('fails a redirect to +all', async () => {
    await expect('redirect.test', 'fail', /through "redirect=open\.test".*anyone may send/)
  })

  it('fails two SPF records (permerror)', async () => {
    await expect('two.test', 'fail', /publishes 2 SPF records.*permerror.*merge them into one/)
  })

  it('fails when there is no SPF record', async () => {
    await expect('not-spf.test', 'fail', /publishes no SPF record: add one/)
    await expect('mx-only.test', 'fail', /publishes no SPF record/)
  })

  it('fails a domain that does not exist', async () => {
    await expect('nowhere.test', 'fail', /does not exist in DNS \(NXDOMAIN\)/)
  })

  it('fails more than 10 DNS lookups', async () => {
    await expect('lookups.test', 'fail', /more than 10 DNS lookups.*permerror/)
  })

  it('fails more than 2 void lookups', async () => {
    await expect('void.test', 'fail', /more than 2 DNS lookups that find nothing.*permerror/)
  })

  it('fails a syntax error as strict receivers do', async () => {
    await expect('syntax.test', 'fail', /permanent error.*Unknown mechanism "frobnicate"/)
  })

  it('passes ~all with a warning to prefer -all', async () => {
    const r = await expect('soft.test', 'pass', /one SPF record/)
    assert.match(r.warnings.join('\n'), /~all \(softfail\).*prefer -all/)
  })

  it('passes ?all and a missing all with a warning', async () => {
    for (const domain of ['neutral.test', 'no-all.test']) {
      const r = await expect(domain, 'pass', /one SPF record/)
      assert.match(r.warnings.join('\n'), /\?all or has no "all" term.*end it with -all/)
    }
  })

  it('turns SERVFAIL, REFUSED, timeouts and garbage into temperror, never fail', async () => {
    await expect('servfail.test', 'temperror', /Could not read the SPF record of servfail\.test: .*SERVFAIL/)
    await expect('refused.test', 'temperror', /REFUSED/)
    await expect('timeout.test', 'temperror', /timed out/)
    await expect('garbage.test', 'temperror', /malformed/)
  })

  it('turns SERVFAIL inside an include into temperror', async () => {
    await expect('include-servfail.test', 'temperror', /Could not evaluate the SPF policy.*ESERVFAIL broken\.test/)
  })

  it('recovers once DNS answers again', async () => {
    server.behave('good.test', 'servfail')
    await expect('good.test', 'temperror', /SERVFAIL/)
    server.behave('good.test', undefined)
    await expect('good.test', 'pass', /one SPF record/)
  })
})
