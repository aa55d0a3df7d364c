import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { TestDnsServer } from '@atmos/testkit'
import { type CheckResult, checkDkim, type DnsResolver } from '../src/index.ts'
import { dkimKey, RSA_2048, resolverFor } from './helpers.ts'

const D = 'example.test'
const key = (selector: string, ...records: (string | string[])[]) => ({
  [`${selector}._domainkey.${D}`]: { TXT: records },
})
const RSA_1024 = dkimKey('rsa', 1024)
const RSA_512 = dkimKey('rsa', 512)
const ED25519 = dkimKey('ed25519')

describe('DKIM check', () => {
  const server = new TestDnsServer({
    ...key('good', `v=DKIM1; k=rsa; p=${RSA_2048}`),
    ...key('nov', `k=rsa; p=${RSA_2048}`),
    ...key('ed', `v=DKIM1; k=ed25519; p=${ED25519}`),
    ...key('split', [`v=DKIM1; k=rsa; p=${RSA_2048.slice(0, 200)}`, RSA_2048.slice(200)]),
    ...key('revoked', 'v=DKIM1; k=rsa; p='),
    ...key('malformed', 'v=DKIM1; k=rsa; p=bm90IGEga2V5IGF0IGFsbA=='),
    ...key('notbase64', 'v=DKIM1; k=rsa; p=%%%not-base64%%%'),
    ...key('wrongtype', `v=DKIM1; k=ed25519; p=${RSA_2048}`),
    ...key('short', `v=DKIM1; k=rsa; p=${RSA_512}`),
    ...key('weak', `v=DKIM1; k=rsa; p=${RSA_1024}`),
    ...key('testing', `v=DKIM1; k=rsa; t=y; p=${RSA_2048}`),
    ...key('twice', `v=DKIM1; k=rsa; p=${RSA_2048}`, `v=DKIM1; k=ed25519; p=${ED25519}`),
    ...key('other', 'some-verification=abc'),
    ...key('dup', `v=DKIM1; p=${RSA_2048}; p=${RSA_2048}`),
    ...key('sha1', `v=DKIM1; h=sha1; p=${RSA_2048}`),
    ...key('web', `v=DKIM1; s=web; p=${RSA_2048}`),
    [`delegated._domainkey.${D}`]: { CNAME: 'sel1.dkim.provider.test' },
    'sel1.dkim.provider.test': { TXT: [`v=DKIM1; k=rsa; p=${RSA_2048}`] },
    [`servfail._domainkey.${D}`]: { behaviour: 'servfail' },
    [`refused._domainkey.${D}`]: { behaviour: 'refused' },
    [`timeout._domainkey.${D}`]: { behaviour: 'timeout' },
    [`garbage._domainkey.${D}`]: { behaviour: 'garbage' },
  })
  let dns: DnsResolver
  before(async () => {
    await server.start()
    dns = resolverFor(server)
  })
  after(() => server.close())

  async function expect(selectors: string[], outcome: CheckResult['outcome'], reason: RegExp): Promise<CheckResult> {
    const result = await checkDkim(D, selectors, dns)
    assert.equal(result.check, 'dkim')
    assert.equal(result.outcome, outcome, `${selectors}: ${result.reason}`)
    assert.match(result.reason, reason)
    return result
  }

  it('passes a 2048-bit RSA key, with or without v=, and records its size', async () => {
    const r = await expect(['good', 'nov'], 'pass', /Every DKIM selector \("good", "nov"\) publishes one usable key/)
    assert.deepEqual(r.warnings, [])
    const [good] = r.details.selectors as { bits: number; keyType: string }[]
    assert.equal(good?.bits, 2048)
    assert.equal(good?.keyType, 'rsa')
  })

  it('passes an Ed25519 key (k=ed25519)', async () => {
    await expect(['ed'], 'pass', /publishes one usable key/)
  })

  it('passes a key split across strings', async () => {
    await expect(['split'], 'pass', /publishes one usable key/)
  })

  it('passes a selector delegated by CNAME, noting the delegation', async () => {
    const r = await expect(['delegated'], 'pass', /publishes one usable key/)
    const [sel] = r.details.selectors as { delegatedTo: string }[]
    assert.equal(sel?.delegatedTo, 'sel1.dkim.provider.test')
  })

  it('fails a revoked key (empty p=)', async () => {
    await expect(['revoked'], 'fail', /selector "revoked" is revoked \(empty p=\)/)
  })

  it('fails a malformed key, told apart from a revoked one', async () => {
    await expect(['malformed'], 'fail', /selector "malformed" is malformed: p= does not hold a valid RSA public key/)
    await expect(['notbase64'], 'fail', /selector "notbase64" is malformed/)
    await expect(
      ['wrongtype'],
      'fail',
      /selector "wrongtype" is malformed: p= does not hold a valid Ed25519 public key/,
    )
  })

  it('fails a 512-bit RSA key', async () => {
    await expect(
      ['short'],
      'fail',
      /selector "short" is a 512-bit RSA key: receivers reject keys under 1024 bits; publish a 2048-bit key/,
    )
  })

  it('passes a 1024-bit RSA key with a warning', async () => {
    const r = await expect(['weak'], 'pass', /publishes one usable key/)
    assert.match(r.warnings.join('\n'), /selector "weak" is a 1024-bit RSA key; 2048 bits is recommended/)
  })

  it('passes t=y with a warning', async () => {
    const r = await expect(['testing'], 'pass', /publishes one usable key/)
    assert.match(r.warnings.join('\n'), /selector "testing" is in testing mode \(t=y\)/)
  })

  it('fails two key records at one selector', async () => {
    await expect(
      ['twice'],
      'fail',
      /Selector "twice" has 2 DKIM key records at twice\._domainkey\.example\.test.*keep exactly one/,
    )
  })

  it('fails a missing selector, naming it', async () => {
    await expect(
      ['good', 'missing'],
      'fail',
      /DKIM selector "missing" has no key record at missing\._domainkey\.example\.test/,
    )
  })

  it('fails a TXT record that is not a key', async () => {
    await expect(['other'], 'fail', /at other\._domainkey\.example\.test is not a DKIM key/)
  })

  it('fails a key record that repeats a tag', async () => {
    await expect(['dup'], 'fail', /selector "dup" is invalid \(duplicate tag: "p"\)/)
  })

  it('fails a key restricted to sha1 or to another service', async () => {
    await expect(['sha1'], 'fail', /selector "sha1" allows only h=sha1; receivers require sha256/)
    await expect(['web'], 'fail', /selector "web" is restricted to s=web, not email/)
  })

  it('turns SERVFAIL, REFUSED, timeouts and garbage into temperror', async () => {
    await expect(['good', 'servfail'], 'temperror', /Could not read the DKIM key of selector "servfail".*SERVFAIL/)
    await expect(['refused'], 'temperror', /REFUSED/)
    await expect(['timeout'], 'temperror', /timed out/)
    await expect(['garbage'], 'temperror', /malformed/)
  })

  it('fails when one selector fails even if another could not be read', async () => {
    await expect(['revoked', 'servfail'], 'fail', /selector "revoked" is revoked/)
  })
})
