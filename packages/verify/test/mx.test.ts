import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { TestDnsServer } from '@atmos/testkit'
import { type CheckResult, checkMx } from '../src/index.ts'
import { expectCheck, serveZone } from './helpers.ts'

describe('MX check', () => {
  const server = new TestDnsServer({
    'good.test': {
      MX: [
        { priority: 10, exchange: 'mx1.good.test' },
        { priority: 20, exchange: 'mx2.good.test' },
      ],
    },
    'mx1.good.test': { A: ['198.51.100.25'] },
    'mx2.good.test': { AAAA: ['2001:db8::25'] },
    'partly.test': {
      MX: [
        { priority: 10, exchange: 'mx1.good.test' },
        { priority: 20, exchange: 'dangling.partly.test' },
      ],
    },
    'null-mx.test': { MX: [{ priority: 0, exchange: '.' }], A: ['198.51.100.1'] },
    'ip-literal.test': { MX: [{ priority: 10, exchange: '198.51.100.25' }] },
    'no-address.test': { MX: [{ priority: 10, exchange: 'mx.no-address.test' }] },
    'mx.no-address.test': { TXT: ['I have no address'] },
    'no-mx.test': { A: ['198.51.100.1'], TXT: ['v=spf1 -all'] },
    'servfail.test': { behaviour: 'servfail' },
    'refused.test': { behaviour: { MX: 'refused' } },
    'timeout.test': { behaviour: 'timeout' },
    'garbage.test': { behaviour: 'garbage' },
    'host-servfail.test': { MX: [{ priority: 10, exchange: 'mx.host-servfail.test' }] },
    'mx.host-servfail.test': { behaviour: 'servfail' },
    'many.test': {
      MX: Array.from({ length: 40 }, (_, i) => ({
        priority: i,
        exchange: i === 39 ? 'mx1.good.test' : `h${i}.many.test`,
      })),
    },
  })
  const dns = serveZone(server)
  const expect = (domain: string, outcome: CheckResult['outcome'], reason: RegExp) =>
    expectCheck(checkMx(domain, dns()), 'mx', outcome, reason, domain)

  it('passes MX hosts with A or AAAA records', async () => {
    const r = await expect('good.test', 'pass', /good\.test has 2 usable MX hosts/)
    assert.deepEqual(r.warnings, [])
  })

  it('passes when some hosts are unusable, with a warning naming them', async () => {
    const r = await expect('partly.test', 'pass', /a usable MX host/)
    assert.match(r.warnings.join('\n'), /dangling\.partly\.test is not usable: has no A or AAAA record/)
  })

  it('fails a null MX: the domain accepts no mail', async () => {
    await expect('null-mx.test', 'fail', /null MX \("0 \."\): the domain declares it accepts no mail/)
  })

  it('fails an MX that is an IP address literal', async () => {
    await expect('ip-literal.test', 'fail', /198\.51\.100\.25 is an IP address, but an MX must name a host/)
  })

  it('fails an MX target without an address', async () => {
    await expect('no-address.test', 'fail', /mx\.no-address\.test has no A or AAAA record; point the MX at a host name/)
  })

  it('fails a domain without MX records (no implicit MX)', async () => {
    await expect('no-mx.test', 'fail', /no-mx\.test has no MX record: publish one/)
  })

  it('fails a domain that does not exist', async () => {
    await expect('nowhere.test', 'fail', /does not exist in DNS \(NXDOMAIN\)/)
  })

  it('turns SERVFAIL, REFUSED, timeouts and garbage into temperror', async () => {
    await expect('servfail.test', 'temperror', /Could not read the MX records of servfail\.test: .*SERVFAIL/)
    await expect('refused.test', 'temperror', /REFUSED/)
    await expect('timeout.test', 'temperror', /timed out/)
    await expect('garbage.test', 'temperror', /malformed/)
  })

  it('turns a host lookup that fails into temperror, not "no address"', async () => {
    await expect('host-servfail.test', 'temperror', /Could not check the MX hosts.*mx\.host-servfail\.test: .*SERVFAIL/)
  })

  it('checks only the most preferred hosts of a huge MX set', async () => {
    const r = await expect('many.test', 'fail', /None of the MX hosts/)
    assert.match(r.warnings.join('\n'), /Only the 10 most preferred of 40 MX hosts were checked/)
  })
})
