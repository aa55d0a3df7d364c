import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { closedPort, PlcDirectoryServer, TestDnsServer } from '@atmos/testkit'
import {
  type CheckResult,
  checkDomainControl,
  createIdentityResolver,
  type DnsResolver,
  type IdentityResolver,
} from '../src/index.ts'
import { DID, OTHER_DID, resolverFor } from './helpers.ts'

const UNKNOWN_DID = 'did:plc:zzzzzzzzzzzzzzzzzzzzzzzz'
const BROKEN_DID = 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb'
const FLAKY_DID = 'did:plc:ffffffffffffffffffffffff'

describe('domain control check', () => {
  const dnsServer = new TestDnsServer({
    '_atproto.handle.test': { TXT: [`did=${DID}`] },
    '_atproto.txt-only.test': { TXT: ['unrelated=1', `did=${DID}`] },
    '_atproto.wrong.test': { TXT: [`did=${OTHER_DID}`] },
    '_atproto.twice.test': { TXT: [`did=${DID}`, `did=${OTHER_DID}`] },
    '_atproto.servfail.test': { behaviour: 'servfail' },
    '_atproto.contested.test': { TXT: [`did=${OTHER_DID}`] },
    'nothing.test': { A: ['198.51.100.1'] },
  })
  let plc: PlcDirectoryServer
  let dns: DnsResolver
  let identity: IdentityResolver
  // The HTTPS well-known of a handle, as the injected fetch serves it (the PLC URL passes through).
  // Both contested names serve DID at their web root, though DNS says otherwise.
  const wellKnown: Record<string, string> = {
    'wellknown.test': DID,
    'contested.test': DID,
    'servfail.test': DID,
    'twice.test': DID,
  }
  const wellKnownAsked: string[] = []

  before(async () => {
    await dnsServer.start()
    dns = resolverFor(dnsServer)
    plc = await new PlcDirectoryServer().start()
    plc.set(DID, ['handle.test'])
    plc.set(OTHER_DID, ['someone.else.test'])
    plc.fail(FLAKY_DID, 'unavailable')
    plc.fail(BROKEN_DID, 'invalid')
    identity = createIdentityResolver({
      plcUrl: plc.url,
      timeoutMs: 1000,
      fetch: async (input, init) => {
        const url = new URL(input instanceof Request ? input.url : input)
        if (url.origin === plc.url) return globalThis.fetch(input, init)
        if (url.pathname === '/.well-known/atproto-did') wellKnownAsked.push(url.hostname)
        const did = url.pathname === '/.well-known/atproto-did' ? wellKnown[url.hostname] : undefined
        return did ? new Response(`${did}\n`) : new Response('not found', { status: 404 })
      },
    })
  })
  after(async () => {
    await dnsServer.close()
    await plc.close()
  })

  async function expect(did: string, domain: string, outcome: CheckResult['outcome'], reason: RegExp, id = identity) {
    const result = await checkDomainControl(did, domain, { dns, identity: id })
    assert.equal(result.check, 'domain_control')
    assert.equal(result.outcome, outcome, `${did} ${domain}: ${result.reason}`)
    assert.match(result.reason, reason)
    return result
  }

  it('passes when the domain is the handle and _atproto resolves back to the DID', async () => {
    const r = await expect(
      DID,
      'handle.test',
      'pass',
      /handle\.test is the handle of did:plc:\w+ and resolves back to it through _atproto\.handle\.test/,
    )
    assert.equal(r.details.method, 'handle')
    assert.deepEqual(r.details.handles, ['at://handle.test'])
    assert.ok(plc.requests.includes(DID), 'the DID document came from the loopback PLC')
  })

  it('passes when the handle resolves back through the HTTPS well-known', async () => {
    const r = await expect(
      DID,
      'wellknown.test',
      'pass',
      /wellknown\.test is the handle of .* through https:\/\/wellknown\.test\/\.well-known\/atproto-did/,
      { ...identity, resolveDid: async (did) => ({ id: did, alsoKnownAs: ['at://wellknown.test'] }) },
    )
    assert.equal(r.details.method, 'handle')
  })

  /** The identity resolver, with DID's document claiming `handle` as its handle. */
  const claiming = (handle: string): IdentityResolver => ({
    ...identity,
    resolveDid: async (did) => ({ id: did, alsoKnownAs: did === DID ? [`at://${handle}`] : [] }),
  })

  it('lets a did= record decide over the HTTPS well-known: one domain, one DID', async () => {
    await expect(
      DID,
      'contested.test',
      'fail',
      new RegExp(`_atproto\\.contested\\.test names "${OTHER_DID}", not ${DID}`),
      claiming('contested.test'),
    )
    const owner = await expect(OTHER_DID, 'contested.test', 'pass', /_atproto\.contested\.test names/)
    assert.equal(owner.details.method, 'dns-txt')
    await expect(DID, 'twice.test', 'fail', /holds 2 did= records/, claiming('twice.test'))
    assert.ok(!wellKnownAsked.includes('contested.test'), 'the web root was not asked')
    assert.ok(!wellKnownAsked.includes('twice.test'), 'the web root was not asked')
  })

  it('never falls back to the HTTPS well-known when the TXT lookup failed', async () => {
    await expect(
      DID,
      'servfail.test',
      'temperror',
      /Could not read _atproto\.servfail\.test: .*SERVFAIL/,
      claiming('servfail.test'),
    )
    assert.ok(!wellKnownAsked.includes('servfail.test'), 'the web root was not asked')
  })

  it('passes on the _atproto TXT record alone', async () => {
    const r = await expect(DID, 'txt-only.test', 'pass', /_atproto\.txt-only\.test names did:plc:/)
    assert.equal(r.details.method, 'dns-txt')
  })

  it('fails a TXT record that names another DID, saying what to publish', async () => {
    await expect(
      DID,
      'wrong.test',
      'fail',
      new RegExp(`names "${OTHER_DID}", not ${DID}: publish the TXT record _atproto\\.wrong\\.test "did=${DID}"`),
    )
  })

  it('fails two did= records', async () => {
    await expect(DID, 'twice.test', 'fail', /holds 2 did= records, so it names no account/)
  })

  it('fails when neither the handle nor a TXT record ties the domain to the DID', async () => {
    await expect(
      OTHER_DID,
      'nothing.test',
      'fail',
      /nothing\.test is not the handle of did:plc:\w+ and _atproto\.nothing\.test does not name it: publish/,
    )
  })

  it('fails a handle claim that does not resolve back', async () => {
    await expect(
      OTHER_DID,
      'someone.else.test',
      'fail',
      /someone\.else\.test is the handle claimed by .* but it does not resolve back to it: publish/,
    )
  })

  it('fails a DID the directory does not know, or whose document is invalid', async () => {
    await expect(UNKNOWN_DID, 'nothing.test', 'fail', /could not be resolved \(the directory does not know it\)/)
    await expect(BROKEN_DID, 'nothing.test', 'fail', /could not be resolved \(its DID document is invalid\)/)
  })

  it('turns a PLC directory that fails or is down into temperror', async () => {
    await expect(
      FLAKY_DID,
      'nothing.test',
      'temperror',
      /Could not resolve did:plc:f+ .*the DID directory did not answer/,
    )
    const down = createIdentityResolver({ plcUrl: `http://127.0.0.1:${await closedPort()}`, timeoutMs: 1000 })
    await expect(DID, 'nothing.test', 'temperror', /the DID directory did not answer/, down)
  })

  it('still passes on the TXT record while the PLC directory is down', async () => {
    const down = createIdentityResolver({ plcUrl: `http://127.0.0.1:${await closedPort()}`, timeoutMs: 1000 })
    await expect(DID, 'txt-only.test', 'pass', /names did:plc:/, down)
  })

  it('turns a DNS failure into temperror when nothing else proves control', async () => {
    await expect(OTHER_DID, 'servfail.test', 'temperror', /Could not read _atproto\.servfail\.test: .*SERVFAIL/)
  })
})
