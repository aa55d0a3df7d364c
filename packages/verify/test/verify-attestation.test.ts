import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, it } from 'node:test'
import { type DnsRecords, TestDnsServer } from '@atmos/testkit'
import {
  type AttestationInput,
  type CheckName,
  type DnsResolver,
  inputProblem,
  verifyAttestation,
} from '../src/index.ts'
import { DID, goodZone, resolverFor, staticIdentity } from './helpers.ts'

const DOMAIN = 'mail.example.test'
const input: AttestationInput = { did: DID, domain: DOMAIN, dkimSelectors: ['atmos1'] }
const now = () => new Date('2026-11-25T12:00:00.000Z')

describe('verifyAttestation', () => {
  const server = new TestDnsServer()
  let dns: DnsResolver
  const identity = staticIdentity()
  const verify = (i: AttestationInput = input) => verifyAttestation(i, { dns, identity, now })
  const outcomes = (checks: { check: CheckName; outcome: string }[]) =>
    Object.fromEntries(checks.map((c) => [c.check, c.outcome]))

  before(async () => {
    await server.start()
    dns = resolverFor(server)
  })
  beforeEach(() => {
    server.zone = goodZone(DOMAIN)
  })
  after(() => server.close())

  it('passes a well-configured domain on all five checks', async () => {
    const result = await verify()
    assert.equal(result.outcome, 'pass', JSON.stringify(result.checks, null, 2))
    assert.equal(result.reason, 'All checks pass.')
    assert.equal(result.checkedAt, '2026-11-25T12:00:00.000Z')
    assert.deepEqual(outcomes(result.checks), {
      domain_control: 'pass',
      mx: 'pass',
      spf: 'pass',
      dkim: 'pass',
      dmarc: 'pass',
    })
    for (const check of result.checks) assert.deepEqual(check.warnings, [], check.check)
  })

  it('fails a domain that does not exist at all (NXDOMAIN), on every check', async () => {
    server.zone = {}
    const result = await verify()
    assert.equal(result.outcome, 'fail')
    assert.equal(result.reason, 'Failed: domain_control, mx, spf, dkim, dmarc.')
    const byCheck = Object.fromEntries(result.checks.map((c) => [c.check, c.reason]))
    assert.match(byCheck.mx ?? '', /does not exist in DNS \(NXDOMAIN\)/)
    assert.match(byCheck.spf ?? '', /does not exist in DNS \(NXDOMAIN\)/)
    assert.match(byCheck.dkim ?? '', /selector "atmos1" has no key record/)
    assert.match(byCheck.dmarc ?? '', /no DMARC record/)
    assert.match(byCheck.domain_control ?? '', /publish the TXT record _atproto\.mail\.example\.test/)
  })

  const degradations: [string, string, DnsRecords['behaviour'], CheckName, RegExp][] = [
    ['MX', DOMAIN, { MX: 'servfail' }, 'mx', /MX records .*SERVFAIL/],
    ['SPF TXT', DOMAIN, { TXT: 'servfail' }, 'spf', /SPF record .*SERVFAIL/],
    ['MX host address', `mx.${DOMAIN}`, 'servfail', 'mx', /MX hosts .*SERVFAIL/],
    ['DKIM TXT', `atmos1._domainkey.${DOMAIN}`, 'servfail', 'dkim', /DKIM key .*SERVFAIL/],
    ['DMARC TXT', `_dmarc.${DOMAIN}`, 'servfail', 'dmarc', /DMARC record .*SERVFAIL/],
    ['_atproto TXT', `_atproto.${DOMAIN}`, 'servfail', 'domain_control', /_atproto.*SERVFAIL/],
  ]
  for (const [what, name, behaviour, check, reason] of degradations) {
    it(`turns SERVFAIL on the ${what} record into temperror, not fail`, async () => {
      server.behave(name, behaviour)
      const result = await verify()
      assert.equal(result.outcome, 'temperror', JSON.stringify(outcomes(result.checks)))
      assert.match(result.reason, new RegExp(`Could not complete: ${check}; retry later`))
      const failing = result.checks.find((c) => c.check === check)
      assert.equal(failing?.outcome, 'temperror')
      assert.match(failing?.reason ?? '', reason)
      for (const c of result.checks) if (c.check !== check) assert.equal(c.outcome, 'pass', c.check)
    })
  }

  it('degrades mid-run: pass, then REFUSED / timeout / garbage everywhere gives temperror, then pass again', async () => {
    assert.equal((await verify()).outcome, 'pass')
    for (const behaviour of ['refused', 'timeout', 'garbage'] as const) {
      for (const name of Object.keys(server.zone)) server.behave(name, behaviour)
      const result = await verify()
      assert.equal(result.outcome, 'temperror', behaviour)
      for (const c of result.checks) assert.equal(c.outcome, 'temperror', `${behaviour} ${c.check}: ${c.reason}`)
      for (const name of Object.keys(server.zone)) server.behave(name, undefined)
    }
    assert.equal((await verify()).outcome, 'pass')
  })

  it('fails when one check fails even while another is temporary', async () => {
    server.set(DOMAIN, { ...server.zone[DOMAIN], TXT: ['v=spf1 +all'] })
    server.behave(`_dmarc.${DOMAIN}`, 'servfail')
    const result = await verify()
    assert.equal(result.outcome, 'fail')
    assert.equal(result.reason, 'Failed: spf.')
    assert.equal(result.checks.find((c) => c.check === 'dmarc')?.outcome, 'temperror')
  })

  it('refuses hostile input without sending a single DNS query', async () => {
    const hostile: [Partial<AttestationInput> & Record<string, unknown>, RegExp][] = [
      [{ domain: `${'a.'.repeat(148)}test` }, /The domain is 300 characters long; at most 253/],
      [{ domain: '192.0.2.1' }, /not an IP address/],
      [{ domain: '[192.0.2.1]' }, /not an IP address/],
      [{ domain: 'localhost' }, /fully-qualified/],
      [{ domain: 'Example.TEST' }, /lower case/],
      [{ domain: 'exa mple.test' }, /invalid label/],
      [{ domain: 42 as unknown as string }, /must be a string/],
      [
        { dkimSelectors: Array.from({ length: 10_000 }, (_, i) => `s${i}`) },
        /10000 DKIM selectors were given; at most 10/,
      ],
      [{ dkimSelectors: [] }, /At least one DKIM selector/],
      [{ dkimSelectors: ['a.b'] }, /"a\.b" is not a single DNS label/],
      [{ dkimSelectors: ['../../etc'] }, /is not a single DNS label/],
      [{ dkimSelectors: ['sel/x'] }, /is not a single DNS label/],
      [{ dkimSelectors: ['atmos1', 'ATMOS1'] }, /must not repeat/],
      [{ dkimSelectors: [7 as unknown as string] }, /must be a string/],
      [{ did: 'not-a-did' }, /is not a valid DID/],
      [{ did: 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK' }, /method other than did:plc or did:web/],
    ]
    const before = server.queries.length
    for (const [override, reason] of hostile) {
      const attempt = { ...input, ...override } as AttestationInput
      const result = await verify(attempt)
      assert.equal(result.outcome, 'fail', JSON.stringify(override).slice(0, 80))
      assert.deepEqual(result.checks, [])
      assert.match(result.reason, reason)
      assert.equal(inputProblem(attempt), result.reason)
    }
    assert.equal((await verifyAttestation(null as unknown as AttestationInput, { dns, identity })).outcome, 'fail')
    assert.equal(server.queries.length, before, 'no DNS query was sent')
  })

  it('survives hostile DNS data: 500-string and huge TXT records, long names, odd MX', async () => {
    const strings = Array.from({ length: 500 }, (_, i) => `ip4:198.51.${i % 256}.0/24 `)
    server.set(DOMAIN, {
      MX: Array.from({ length: 200 }, (_, i) => ({
        priority: i,
        exchange: `${'x'.repeat(63)}.${'y'.repeat(63)}.h${i}.test`,
      })),
      TXT: [['v=spf1 ', ...strings, '-all'], 'x'.repeat(20_000)],
    })
    server.set(`atmos1._domainkey.${DOMAIN}`, { TXT: [Array.from({ length: 200 }, () => 'p='.padEnd(255, 'A'))] })
    server.set(`_dmarc.${DOMAIN}`, {
      TXT: [`v=DMARC1; p=reject; ${Array.from({ length: 3000 }, (_, i) => `x${i}=y`).join('; ')}`],
    })
    const result = await verifyAttestation(input, { dns: resolverFor(server, 5000), identity })
    assert.equal(result.outcome, 'fail')
    const byCheck = Object.fromEntries(result.checks.map((c) => [c.check, c]))
    assert.match(byCheck.mx?.reason ?? '', /None of the MX hosts/)
    assert.equal(byCheck.spf?.outcome, 'pass', byCheck.spf?.reason)
    assert.match(byCheck.dkim?.reason ?? '', /is malformed/)
    assert.equal(byCheck.dmarc?.outcome, 'pass', byCheck.dmarc?.reason)
    for (const check of result.checks)
      assert.ok(JSON.stringify(check).length < 40_000, `${check.check} details are clipped`)
  })

  it('never throws, whatever the injected resolvers do', async () => {
    const throwing = {
      resolveTxt: async () => {
        throw 'a string, not an error'
      },
      resolveMx: async () => [{ exchange: 42, priority: 'x' }],
      resolve4: () => {
        throw new TypeError('synchronous')
      },
      resolve6: async () => null,
      resolveCname: async () => undefined,
      resolve: async () => {
        throw Object.assign(new Error('weird'), { code: 12 })
      },
    } as unknown as DnsResolver
    const weirdIdentity = {
      resolveDid: async () => {
        throw null
      },
      resolveHandleHttps: async () => undefined,
    }
    const result = await verifyAttestation(input, { dns: throwing, identity: weirdIdentity })
    assert.notEqual(result.outcome, 'pass')
    assert.equal(result.checks.length, 5)
    for (const c of result.checks) {
      assert.notEqual(c.outcome, 'pass', c.check)
      assert.equal(typeof c.reason, 'string')
    }
  })
})
