import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { TestDnsServer } from '@atmos/testkit'
import { type CheckResult, checkDmarc } from '../src/index.ts'
import { expectCheck, serveZone } from './helpers.ts'

const dmarc = (domain: string, ...records: (string | string[])[]) => ({ [`_dmarc.${domain}`]: { TXT: records } })

describe('DMARC check', () => {
  const server = new TestDnsServer({
    ...dmarc('reject.test', 'v=DMARC1; p=reject; rua=mailto:d@reject.test'),
    ...dmarc('quarantine.test', ['v=DMARC1; p=quarantine;', ' rua=mailto:d@quarantine.test']),
    ...dmarc('none.test', 'v=DMARC1; p=none; rua=mailto:d@none.test'),
    ...dmarc('two.test', 'v=DMARC1; p=reject', 'v=DMARC1; p=quarantine'),
    ...dmarc('late-version.test', 'p=reject; v=DMARC1; rua=mailto:d@late-version.test'),
    ...dmarc('lower-version.test', 'v=dmarc1; p=reject'),
    ...dmarc('pct50.test', 'v=DMARC1; p=reject; pct=50; rua=mailto:d@pct50.test'),
    ...dmarc('pct0.test', 'v=DMARC1; p=reject; pct=0; rua=mailto:d@pct0.test'),
    ...dmarc('pctjunk.test', 'v=DMARC1; p=reject; pct=lots; rua=mailto:d@pctjunk.test'),
    ...dmarc('upper-tag.test', 'v=DMARC1; P=reject; RUA=mailto:d@upper-tag.test'),
    ...dmarc('upper-value.test', 'v=DMARC1; p=Reject; rua=mailto:d@upper-value.test'),
    ...dmarc('testing-reject.test', 'v=DMARC1; p=reject; t=y; rua=mailto:d@testing-reject.test'),
    ...dmarc('testing-quarantine.test', 'v=DMARC1; p=quarantine; t=y; rua=mailto:d@testing-quarantine.test'),
    ...dmarc('no-rua.test', 'v=DMARC1; p=reject'),
    ...dmarc('no-p.test', 'v=DMARC1; rua=mailto:d@no-p.test'),
    ...dmarc('bad-p.test', 'v=DMARC1; p=block'),
    ...dmarc('dup.test', 'v=DMARC1; p=none; p=reject'),
    'nothing.test': { A: ['198.51.100.1'] },
    ...dmarc('org.test', 'v=DMARC1; p=reject; rua=mailto:d@org.test'),
    'mail.org.test': { MX: [{ priority: 10, exchange: 'mx.org.test' }] },
    ...dmarc('sp.test', 'v=DMARC1; p=reject; sp=none; rua=mailto:d@sp.test'),
    'mail.sp.test': { A: ['198.51.100.1'] },
    '_dmarc.servfail.test': { behaviour: 'servfail' },
    '_dmarc.refused.test': { behaviour: 'refused' },
    '_dmarc.timeout.test': { behaviour: 'timeout' },
    '_dmarc.garbage.test': { behaviour: 'garbage' },
    '_dmarc.parent-servfail.test': { behaviour: 'servfail' },
  })
  const dns = serveZone(server)
  const expect = (domain: string, outcome: CheckResult['outcome'], reason: RegExp) =>
    expectCheck(checkDmarc(domain, dns()), 'dmarc', outcome, reason, domain)

  it('passes p=reject and p=quarantine (a record split across strings too)', async () => {
    const r = await expect('reject.test', 'pass', /asks receivers to reject failing mail \(p=reject\)/)
    assert.deepEqual(r.warnings, [])
    assert.equal(r.details.effectivePolicy, 'reject')
    await expect('quarantine.test', 'pass', /asks receivers to quarantine failing mail/)
  })

  it('fails p=none', async () => {
    await expect(
      'none.test',
      'fail',
      /DMARC policy is p=none .*receivers take no action on failing mail; publish p=quarantine or p=reject/,
    )
  })

  it('fails two DMARC records', async () => {
    await expect('two.test', 'fail', /_dmarc\.two\.test holds 2 DMARC records; receivers then apply no policy/)
  })

  it('fails a record that does not start with v=DMARC1 (the version value is case-sensitive)', async () => {
    await expect('late-version.test', 'fail', /does not start with v=DMARC1, so receivers ignore it/)
    await expect('lower-version.test', 'fail', /does not start with v=DMARC1/)
  })

  it('passes pct=50 with a warning naming the effective policy', async () => {
    const r = await expect('pct50.test', 'pass', /p=reject/)
    assert.match(r.warnings.join('\n'), /pct=50: only 50% of failing mail gets p=reject, the rest gets p=quarantine/)
    assert.equal(r.details.effectivePolicy, 'quarantine')
  })

  it('fails pct=0: the policy applies to no mail', async () => {
    await expect('pct0.test', 'fail', /pct=0 .*applies to no mail, so it acts like p=none/)
  })

  it('does not read an unparseable pct as pct=0', async () => {
    const r = await expect('pctjunk.test', 'pass', /p=reject/)
    assert.match(r.warnings.join('\n'), /pct=lots is not a number/)
  })

  it('reads tag names case-insensitively (P=reject passes, with a warning)', async () => {
    const r = await expect('upper-tag.test', 'pass', /p=reject/)
    assert.match(r.warnings.join('\n'), /tag names in upper case/)
    assert.doesNotMatch(r.warnings.join('\n'), /no rua/)
  })

  it('reads p=Reject as reject: RFC 7489 policy values are ABNF literals, case-insensitive', async () => {
    await expect('upper-value.test', 'pass', /p=reject/)
  })

  it('treats t=y as one policy weaker: reject warns, quarantine fails', async () => {
    const r = await expect('testing-reject.test', 'pass', /p=reject/)
    assert.match(r.warnings.join('\n'), /t=y \(testing\): receivers apply p=quarantine instead of p=reject/)
    await expect('testing-quarantine.test', 'fail', /t=y \(testing\) with p=quarantine.*receivers apply p=none instead/)
  })

  it('warns when there is no rua', async () => {
    const r = await expect('no-rua.test', 'pass', /p=reject/)
    assert.match(r.warnings.join('\n'), /no rua= address, so you receive no aggregate reports/)
  })

  it('fails a missing, invalid or repeated p', async () => {
    await expect('no-p.test', 'fail', /has no p= policy/)
    await expect('bad-p.test', 'fail', /has p=block, which is not a DMARC policy/)
    await expect('dup.test', 'fail', /repeats a tag/)
  })

  it('fails when there is no record, here or above', async () => {
    await expect(
      'nothing.test',
      'fail',
      /nothing\.test has no DMARC record at _dmarc\.nothing\.test, nor does its organizational domain/,
    )
  })

  it('accepts a record inherited from the organizational domain, noting it', async () => {
    const r = await expect('mail.org.test', 'pass', /The DMARC record of org\.test \(inherited by mail\.org\.test\)/)
    assert.equal(r.details.inheritedFrom, 'org.test')
    assert.match(
      r.warnings.join('\n'),
      /mail\.org\.test has no DMARC record of its own; the policy of org\.test applies/,
    )
  })

  it('applies sp= to an inheriting subdomain', async () => {
    await expect('mail.sp.test', 'fail', /DMARC policy is sp=none/)
  })

  it('turns SERVFAIL, REFUSED, timeouts and garbage into temperror', async () => {
    await expect('servfail.test', 'temperror', /Could not read the DMARC record at _dmarc\.servfail\.test: .*SERVFAIL/)
    await expect('refused.test', 'temperror', /REFUSED/)
    await expect('timeout.test', 'temperror', /timed out/)
    await expect('garbage.test', 'temperror', /malformed/)
  })

  it('turns a failure while looking above the domain into temperror', async () => {
    await expect(
      'mail.parent-servfail.test',
      'temperror',
      /Could not look for a DMARC record above mail\.parent-servfail\.test/,
    )
  })
})
