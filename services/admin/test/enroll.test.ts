import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createPool, type Pool } from '@atmos/db'
import { type AttestationRecord, type StatusChange, startEnrolment, verifyApiKey } from '@atmos/enrolment'
import { createKeyringFile, type Keyring, loadKeyring } from '@atmos/secrets'
import { createTestDatabase, type DnsZone, PlcDirectoryServer, type TestDatabase, TestDnsServer } from '@atmos/testkit'
import { createDnsResolver, createIdentityResolver } from '@atmos/verify'
import { CheckRateLimiter } from '../src/enroll/check.ts'
import { enrollSection } from '../src/enroll/config.ts'
import type { DnsRecordToPublish } from '../src/enroll/records.ts'
import { enrollRoutes } from '../src/enroll/routes.ts'
import { checkDomainNow, chooseDomain, domainRecords, type WizardDeps, WizardError } from '../src/enroll/wizard.ts'

// The wizard's logic against real Postgres, a loopback DNS server and a loopback PLC
// directory: refusals, control, the records, check now (good zone, missing DKIM, SERVFAIL),
// and the routes through activation and credentials.

const POOL_INCLUDE = '_spf.pool.example'
const did = (tag: string) => `did:plc:${tag.padEnd(24, 'z')}`

let tdb: TestDatabase
let sql: Pool
let keyring: Keyring
const dnsServer = new TestDnsServer()
const plc = new PlcDirectoryServer()
let deps: WizardDeps

before(async () => {
  tdb = await createTestDatabase()
  sql = createPool({ url: tdb.url, poolMax: 4 })
  const kek = join(mkdtempSync(join(tmpdir(), 'atmos-enroll-')), 'kek')
  createKeyringFile(kek)
  keyring = loadKeyring(kek)
  await dnsServer.start()
  await plc.start()
  deps = {
    sql,
    keyring,
    dns: createDnsResolver({ servers: [dnsServer.address], timeoutMs: 500, tries: 1 }),
    identity: createIdentityResolver({ plcUrl: plc.url, timeoutMs: 2000, fetch: globalThis.fetch }),
    config: enrollSection.parse({ spfInclude: POOL_INCLUDE, dmarcRua: 'dmarc@pool.example', checkTimeout: '10s' }),
    maxDomains: 2,
    limiter: new CheckRateLimiter(1000, 60_000),
  }
})

after(async () => {
  await sql?.end({ timeout: 5 })
  await dnsServer.close()
  await plc.close()
  await tdb?.drop()
})

/** The pool's own SPF record (what the include points at) and the member domain's MX host. */
function baseZone(domain: string): DnsZone {
  return {
    [POOL_INCLUDE]: { TXT: ['v=spf1 ip4:203.0.113.0/24 -all'] },
    [domain]: { MX: [{ priority: 10, exchange: `mx.${domain}` }], TXT: ['v=spf1 mx ~all'] },
    [`mx.${domain}`]: { A: ['198.51.100.25'] },
  }
}

/** Publishes what the wizard asked for, as a member's DNS provider would. */
function publish(zone: DnsZone, records: DnsRecordToPublish[]): DnsZone {
  const out = structuredClone(zone)
  for (const r of records) {
    if (r.type !== 'TXT') continue
    out[r.name] ??= {}
    const at = out[r.name]!
    // SPF replaces the domain's SPF record; everything else is the only TXT at its name.
    const kept = r.purpose === 'spf' ? (at.TXT ?? []).filter((t) => !String(t).startsWith('v=spf1')) : []
    at.TXT = [...kept, r.strings!]
  }
  return out
}

async function verified(d: string, domain: string) {
  await sql`
    insert into verification_status (did, domain, holds, last_outcome, last_run_at)
    values (${d}, ${domain}, true, 'pass', now())
    on conflict (did, domain) do update set holds = true`
}

describe('the wizard', () => {
  it('refuses a domain another DID holds: by its verified attestation, or by a live relay domain', async () => {
    const owner = did('ownera')
    await verified(owner, 'claimed.example')
    await assert.rejects(
      chooseDomain(deps, { did: did('claimera') }, 'claimed.example'),
      (err: unknown) =>
        err instanceof WizardError &&
        err.status === 409 &&
        err.message ===
          `claimed.example is held by ${owner} (its attestation for it verifies); a domain belongs to one account at a time`,
    )
    const holder = did('holdera')
    await startEnrolment(sql, keyring, { did: holder, domain: 'held.example', maxDomains: 2 })
    await assert.rejects(
      chooseDomain(deps, { did: did('claimerb') }, 'held.example'),
      (err: unknown) =>
        err instanceof WizardError &&
        /held by another account/.test(err.message) &&
        !err.message.includes('did:plc:holdera'),
    )
    // Nothing was created for the refused DIDs.
    assert.equal((await sql`select 1 from members where did in (${did('claimera')}, ${did('claimerb')})`).length, 0)
    // Not a domain at all: said as such.
    await assert.rejects(chooseDomain(deps, { did: did('claimerc') }, 'bad domain/x'), /not a domain name/)
  })

  it('says whether the handle proves control or which _atproto record to publish', async () => {
    const d = did('handlea')
    const byHandle = await chooseDomain(deps, { did: d, handle: 'handle.example' }, 'handle.example')
    assert.equal(byHandle.control.status, 'proven')
    const other = did('handleb')
    const byTxt = await chooseDomain(deps, { did: other, handle: 'someone.bsky.social' }, 'txt.example')
    assert.equal(byTxt.control.status, 'publish')
    assert.deepEqual(byTxt.control.status === 'publish' && byTxt.control.record, {
      name: '_atproto.txt.example',
      type: 'TXT',
      value: `did=${other}`,
    })
    dnsServer.set('_atproto.txt.example', { TXT: [`did=${other}`] })
    const records = await domainRecords(deps, { did: other }, 'txt.example')
    assert.equal(records.control.status, 'proven')
    // Still listed (what DNS holds is compared with it); only a handle makes it unnecessary.
    assert.equal(records.records.find((r) => r.purpose === 'domain_control')?.value, `did=${other}`)
    const handled = await domainRecords(deps, { did: d, handle: 'handle.example' }, 'handle.example')
    assert.equal(
      handled.records.find((r) => r.purpose === 'domain_control'),
      undefined,
    )
  })

  it('check now over a good zone passes every check and shows each record published', async () => {
    const d = did('gooda')
    const domain = 'good.example'
    plc.set(d, ['gooda.pds.example'])
    dnsServer.zone = { ...dnsServer.zone, ...baseZone(domain) }
    await chooseDomain(deps, { did: d }, domain)
    const { records, spf } = await domainRecords(deps, { did: d }, domain)
    assert.ok(spf.ok)
    assert.equal(spf.record, `v=spf1 mx include:${POOL_INCLUDE} ~all`, 'merged with the existing record')
    dnsServer.zone = publish(dnsServer.zone, records)
    const result = await checkDomainNow(deps, { did: d }, domain)
    assert.equal(result.outcome, 'pass', JSON.stringify(result.checks))
    assert.deepEqual(result.checks.map((c) => [c.check, c.outcome, c.fix]).sort(), [
      ['dkim', 'pass', null],
      ['dmarc', 'pass', null],
      ['domain_control', 'pass', null],
      ['mx', 'pass', null],
      ['spf', 'pass', null],
    ])
    assert.deepEqual(
      result.records.map((r) => [r.name, r.state]),
      [
        [`atmos1r._domainkey.${domain}`, 'published'],
        [`atmos1e._domainkey.${domain}`, 'published'],
        [domain, 'published'],
        [`_dmarc.${domain}`, 'published'],
        [`_atproto.${domain}`, 'published'],
      ],
    )
    assert.ok(result.records[0]!.seen[0]!.startsWith('v=DKIM1; k=rsa; p='))
  })

  it('a zone missing DKIM fails with the fix, and shows the keys as not there yet', async () => {
    const d = did('nodkima')
    const domain = 'nodkim.example'
    plc.set(d, ['nodkima.pds.example'])
    dnsServer.zone = { ...dnsServer.zone, ...baseZone(domain) }
    await chooseDomain(deps, { did: d }, domain)
    const { records } = await domainRecords(deps, { did: d }, domain)
    dnsServer.zone = publish(
      dnsServer.zone,
      records.filter((r) => r.purpose !== 'dkim'),
    )
    const result = await checkDomainNow(deps, { did: d }, domain)
    assert.equal(result.outcome, 'fail')
    const dkim = result.checks.find((c) => c.check === 'dkim')!
    assert.equal(dkim.outcome, 'fail')
    assert.match(dkim.reason, /has no key record at atmos1r\._domainkey\.nodkim\.example/)
    assert.match(dkim.fix!, /Publish both DKIM records exactly as shown in step 3 \(atmos1r\._domainkey/)
    assert.match(result.summary, /DKIM fails/)
    for (const c of result.checks.filter((c) => c.check !== 'dkim')) assert.equal(c.outcome, 'pass', c.check)
    assert.deepEqual(
      result.records.filter((r) => r.purpose === 'dkim').map((r) => r.state),
      ['absent', 'absent'],
    )
    // A wrong key is "different", not "absent".
    dnsServer.set(`atmos1r._domainkey.${domain}`, { TXT: ['v=DKIM1; k=rsa; p=AAAA'] })
    const wrong = await checkDomainNow(deps, { did: d }, domain)
    assert.equal(wrong.records.find((r) => r.name === `atmos1r._domainkey.${domain}`)!.state, 'different')
  })

  it('SERVFAIL says "try again", never "fail"', async () => {
    const d = did('servfaila')
    const domain = 'servfail.example'
    plc.set(d, ['servfaila.pds.example'])
    dnsServer.zone = { ...dnsServer.zone, ...baseZone(domain) }
    await chooseDomain(deps, { did: d }, domain)
    const { records } = await domainRecords(deps, { did: d }, domain)
    dnsServer.zone = publish(dnsServer.zone, records)
    dnsServer.behave(`_dmarc.${domain}`, 'servfail')
    dnsServer.behave(`atmos1e._domainkey.${domain}`, 'servfail')
    const result = await checkDomainNow(deps, { did: d }, domain)
    assert.equal(result.outcome, 'try-again')
    assert.match(result.summary, /try again/)
    assert.equal(
      result.checks.some((c) => c.outcome === 'fail'),
      false,
    )
    for (const name of ['dmarc', 'dkim']) {
      const c = result.checks.find((x) => x.check === name)!
      assert.equal(c.outcome, 'try-again')
      assert.match(c.fix!, /Try again in a minute/)
    }
    assert.equal(result.records.find((r) => r.name === `_dmarc.${domain}`)!.state, 'unknown')
  })
  it('is bounded in time: DNS that never answers gives "try again" within the bound', async () => {
    const d = did('slowa')
    const domain = 'slow.example'
    plc.set(d, ['slowa.pds.example'])
    dnsServer.zone = { ...dnsServer.zone, ...baseZone(domain) }
    await chooseDomain(deps, { did: d }, domain)
    for (const name of [domain, `_dmarc.${domain}`, `_atproto.${domain}`, `atmos1r._domainkey.${domain}`]) {
      dnsServer.behave(name, 'timeout')
    }
    const slow: WizardDeps = {
      ...deps,
      // The resolver alone would wait 2 × 4 s a query; the check's bound is 1.5 s in all.
      dns: createDnsResolver({ servers: [dnsServer.address], timeoutMs: 4000, tries: 2 }),
      config: { ...deps.config, checkTimeout: 1500 },
    }
    const started = Date.now()
    const result = await checkDomainNow(slow, { did: d }, domain)
    const took = Date.now() - started
    assert.ok(took < 3000, `took ${took} ms`)
    assert.equal(result.outcome, 'try-again')
    assert.equal(
      result.checks.some((c) => c.outcome === 'fail'),
      false,
    )
    assert.match(result.summary, /try again/)
  })
})

describe('routes under /enroll', () => {
  it('need a signed-in account, enrol, show the records and the check, and rate-limit check now', async () => {
    const d = did('routea')
    const domain = 'route.example'
    plc.set(d, ['routea.pds.example'])
    dnsServer.zone = { ...dnsServer.zone, ...baseZone(domain) }
    const announced: StatusChange[] = []
    const app = enrollRoutes({
      ...deps,
      limiter: new CheckRateLimiter(1, 60_000),
      // The test's stand-in for the session: the header names the DID.
      account: (c) => {
        const who = c.req.header('x-test-did')
        return who ? { did: who } : null
      },
      announce: async (change) => {
        announced.push(change)
      },
      csrf: () => 'form-token-1',
      render: (c, fragment, status = 200) => c.html(fragment, status),
      // Stands in for the account's PDS (the browser test writes to a real one).
      publish: async (account, record) => {
        published.push(record)
        return `at://${account.did}/email.atmos.attestation/${record.domain}`
      },
    })
    const published: AttestationRecord[] = []
    const as = { 'x-test-did': d }
    const anonymous = await app.request('/')
    assert.equal(anonymous.status, 403)
    assert.match(await anonymous.text(), /Sign in first/)

    const form = await app.request('/domain', {
      method: 'POST',
      headers: { ...as, 'content-type': 'application/x-www-form-urlencoded' },
      body: `domain=${encodeURIComponent('Route.Example')}`,
    })
    assert.equal(form.status, 303)
    assert.equal(form.headers.get('location'), '/enroll/route.example')

    const page = await (await app.request('/route.example', { headers: as })).text()
    assert.match(page, /atmos1r\._domainkey\.route\.example\. IN TXT &quot;v=DKIM1; k=rsa; p=/)
    assert.match(page, /_atproto\.route\.example\. IN TXT &quot;did=did:plc:routea/)
    assert.doesNotMatch(page, /PRIVATE/)
    assert.match(page, /<input type="hidden" name="_csrf" value="form-token-1">/, 'the forms carry the CSRF token')

    const publish = await app.request('/route.example/publish', { method: 'POST', headers: as })
    assert.equal(publish.status, 303, 'to the labels page (enroll-labels.test.ts), which shows the record URI')
    assert.equal(publish.headers.get('location'), '/enroll/route.example/watch')
    assert.deepEqual(
      published.map((r) => [r.domain, r.dkimSelectors, r.relayMember]),
      [['route.example', ['atmos1r', 'atmos1e'], true]],
    )
    const foreign = await app.request('/route.example/publish', {
      method: 'POST',
      headers: { 'x-test-did': did('routec') },
    })
    assert.equal(foreign.status, 404, 'another account cannot publish for a domain it is not enrolling')

    const check = await app.request('/route.example/check', { method: 'POST', headers: as })
    assert.equal(check.status, 200)
    assert.match(await check.text(), /How to fix/)
    const limited = await app.request('/route.example/check', { method: 'POST', headers: as })
    assert.equal(limited.status, 429)
    assert.ok(Number(limited.headers.get('retry-after')) > 0)

    // Another account sees nothing of it.
    const other = await app.request('/route.example', { headers: { 'x-test-did': did('routeb') } })
    assert.equal(other.status, 404)

    const early = await app.request('/route.example/activate', { method: 'POST', headers: as })
    assert.equal(early.status, 409)
    assert.match(await early.text(), /does not verify yet/)
    await verified(d, domain)
    const activated = await app.request('/route.example/activate', { method: 'POST', headers: as })
    assert.equal(activated.status, 303)
    assert.equal(announced.length, 2)
    const creds = await app.request('/route.example/credentials', { method: 'POST', headers: as })
    assert.equal(creds.status, 200)
    assert.equal(creds.headers.get('cache-control'), 'no-store')
    const html = await creds.text()
    assert.match(html, /PDS_EMAIL_SMTP_URL=smtp:\/\/route\.example:/)
    assert.match(html, /STARTTLS \(required\)/)
    // The API key is issued with the credential, shown once, and verifies as the domain's.
    const key = /atmos_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/.exec(html)?.[0]
    assert.ok(key, 'the API key is on the page')
    assert.equal((await verifyApiKey(sql, key))?.domain, 'route.example')
    assert.match(html, /Authorization: Bearer atmos_/)
  })
})
