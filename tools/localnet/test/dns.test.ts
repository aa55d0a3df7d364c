import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { Resolver } from 'node:dns/promises'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { SINK_HOST } from '../src/network.ts'
import { MAX_BODY } from '../src/web.ts'
import { type Fixture, POOL, startNetwork } from './helpers.ts'

// The local DNS as a newcomer drives it: zone-file lines published and removed with the
// command (a process of its own, as typed), answered to node:dns at once; every other
// domain's MX is the sink; and lines or bodies that are not records are refused, saying why.

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const DOMAIN = 'demo-mail.example'
const DKIM = `v=DKIM1; k=rsa; p=${'A'.repeat(300)}`

function cli(url: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, '--url', url, ...args], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

describe('the local DNS', () => {
  let f: Fixture
  let resolver: Resolver
  let url: string

  before(async () => {
    f = await startNetwork()
    url = f.network.info().webUrl
    resolver = new Resolver({ timeout: 2000, tries: 1 })
    resolver.setServers([f.network.dns!.address])
  })
  after(async () => {
    await f?.close()
  })

  it('publishes the wizard-style lines given to the command, and removes them', async () => {
    const published = await cli(
      url,
      'dns',
      'publish',
      `${DOMAIN}. IN TXT "v=spf1 include:_spf.${POOL.domain} -all"`,
      // A key longer than one character-string, split as the wizard shows it.
      `atmos1r._domainkey.${DOMAIN}. IN TXT "${DKIM.slice(0, 200)}" "${DKIM.slice(200)}"`,
      `${DOMAIN}. 3600 IN MX 10 mx.${POOL.domain}.`,
    )
    assert.equal(published.code, 0, published.stderr)
    assert.match(published.stdout, /3 record\(s\) published/)
    assert.deepEqual(await resolver.resolveTxt(DOMAIN), [[`v=spf1 include:_spf.${POOL.domain} -all`]])
    assert.equal((await resolver.resolveTxt(`atmos1r._domainkey.${DOMAIN}`))[0]!.join(''), DKIM)
    assert.deepEqual(await resolver.resolveMx(DOMAIN), [{ priority: 10, exchange: `mx.${POOL.domain}` }])

    const listed = await cli(url, 'dns', 'list')
    assert.match(listed.stdout, new RegExp(`^${DOMAIN.replace(/\./g, '\\.')}\\. IN MX 10 mx\\.`, 'm'))

    const removed = await cli(url, 'dns', 'remove', DOMAIN, 'TXT')
    assert.equal(removed.code, 0, removed.stderr)
    assert.match(removed.stdout, /1 record\(s\) removed/)
    await assert.rejects(resolver.resolveTxt(DOMAIN), { code: 'ENODATA' })
    assert.deepEqual(await resolver.resolveMx(DOMAIN), [{ priority: 10, exchange: `mx.${POOL.domain}` }])
  })

  it('sends every other domain to the sink', async () => {
    assert.deepEqual(await resolver.resolveMx('anyone.example.org'), [{ priority: 10, exchange: SINK_HOST }])
    assert.deepEqual(await resolver.resolve4(SINK_HOST), ['127.0.0.1'])
    assert.deepEqual(await resolver.resolveTxt(`_spf.${POOL.domain}`), [['v=spf1 ip4:127.0.0.1 -all']])
  })

  it('authorises every domain to send DMARC reports to the pool (RFC 7489 §7.1)', async () => {
    for (const member of ['demo-mail.example', 'a.b.example.org']) {
      assert.deepEqual(await resolver.resolveTxt(`${member}._report._dmarc.${POOL.domain}`), [['v=DMARC1']])
    }
  })

  it('refuses lines that are not records, with the reason, and publishes none of the batch', async () => {
    const cases: Array<[string, RegExp]> = [
      [`${DOMAIN}. IN SRV 0 5 5060 sip.${DOMAIN}.`, /line 2: record type "SRV" not served/],
      [`bad_name!. IN TXT "x"`, /not a domain name/],
      [`${DOMAIN}. IN TXT unquoted`, /TXT data must be quoted/],
      [`${DOMAIN}. IN TXT "${'x'.repeat(256)}"`, /holds 255 bytes at most/],
      [`${DOMAIN}. IN MX 70000 mx.${DOMAIN}.`, /priority \(0–65535\)/],
      [`${DOMAIN}. IN A 300.1.1.1`, /A data is one address/],
    ]
    for (const [line, reason] of cases) {
      const r = await cli(url, 'dns', 'publish', `x.${DOMAIN}. IN TXT "fine"`, line)
      assert.equal(r.code, 1, line)
      assert.match(r.stderr, reason, line)
    }
    await assert.rejects(resolver.resolveTxt(`x.${DOMAIN}`), { code: 'ENODATA' })
  })

  it('refuses a body over the bound and a cross-origin form post', async () => {
    const huge = await fetch(`${url}/api/dns`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ lines: [`${DOMAIN}. IN TXT "${'y'.repeat(MAX_BODY)}"`] }),
    })
    assert.equal(huge.status, 413)
    const forged = await fetch(`${url}/dns/publish`, {
      method: 'POST',
      headers: { origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
      body: `lines=${encodeURIComponent(`${DOMAIN}. IN TXT "evil"`)}`,
    })
    assert.equal(forged.status, 403)
    const form = await fetch(`${url}/dns/publish`, {
      method: 'POST',
      redirect: 'manual',
      headers: { origin: url, 'content-type': 'application/x-www-form-urlencoded' },
      body: `lines=${encodeURIComponent(`page.${DOMAIN}. IN TXT "from the page"`)}`,
    })
    assert.equal(form.status, 303)
    assert.deepEqual(await resolver.resolveTxt(`page.${DOMAIN}`), [['from the page']])
    const page = await (await fetch(`${url}/dns`)).text()
    assert.match(page, /page\.demo-mail\.example\. IN TXT &quot;from the page&quot;/)
  })
})
