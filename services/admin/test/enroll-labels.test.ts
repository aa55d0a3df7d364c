import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createPool, type Pool } from '@atmos/db'
import { startEnrolment } from '@atmos/enrolment'
import { createKeyringFile, type Keyring, loadKeyring } from '@atmos/secrets'
import { closedPort, createTestDatabase, PlcDirectoryServer, type TestDatabase, TestDnsServer } from '@atmos/testkit'
import { createDnsResolver, createIdentityResolver } from '@atmos/verify'
import { CheckRateLimiter } from '../src/enroll/check.ts'
import { enrollSection } from '../src/enroll/config.ts'
import { type EnrollRouteDeps, enrollRoutes } from '../src/enroll/routes.ts'
import type { WatchState } from '../src/enroll/watch.ts'
import { labelReader } from '../src/labels/query.ts'

// The wizard's last mile: the labels page after publishing and the JSON it polls, against
// real Postgres and a real HTTP server standing in for our labeler's queryLabels; and the
// resumable list on /enroll.

const did = (tag: string) => `did:plc:${tag.padEnd(24, 'z')}`
const LABELER = 'did:plc:labelerlabelerlabelerla'

/** A stand-in labeler: answers every label it holds whatever the query asks (the reader must filter). */
class StandInLabeler {
  labels: { src: string; uri: string; val: string; cts: string; exp?: string; neg?: boolean }[] = []
  queries: URL[] = []
  private server: Server | undefined
  url = ''

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://labeler')
      this.queries.push(url)
      if (url.pathname !== '/xrpc/com.atproto.label.queryLabels') {
        res.writeHead(404).end()
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ labels: this.labels }))
    })
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`
  }

  label(uri: string, val: string) {
    this.labels.push({ src: LABELER, uri, val, cts: new Date().toISOString() })
  }

  async close(): Promise<void> {
    await new Promise((resolve) => this.server?.close(resolve))
  }
}

let tdb: TestDatabase
let sql: Pool
let keyring: Keyring
const dnsServer = new TestDnsServer()
const plc = new PlcDirectoryServer()
const labeler = new StandInLabeler()

before(async () => {
  tdb = await createTestDatabase()
  sql = createPool({ url: tdb.url, poolMax: 4 })
  const kek = join(mkdtempSync(join(tmpdir(), 'atmos-enroll-labels-')), 'kek')
  createKeyringFile(kek)
  keyring = loadKeyring(kek)
  await dnsServer.start()
  await plc.start()
  await labeler.start()
})

after(async () => {
  await sql?.end({ timeout: 5 })
  await dnsServer.close()
  await plc.close()
  await labeler.close()
  await tdb?.drop()
})

function app(overrides: Partial<EnrollRouteDeps> & { labelsTimeout?: number } = {}) {
  const { labelsTimeout = 3_600_000, ...rest } = overrides
  return enrollRoutes({
    sql,
    keyring,
    dns: createDnsResolver({ servers: [dnsServer.address], timeoutMs: 500, tries: 1 }),
    identity: createIdentityResolver({ plcUrl: plc.url, timeoutMs: 2000, fetch: globalThis.fetch }),
    config: { ...enrollSection.parse({ spfInclude: '_spf.pool.example' }), labelsTimeout },
    maxDomains: 2,
    limiter: new CheckRateLimiter(1000, 60_000),
    account: (c) => {
      const who = c.req.header('x-test-did')
      return who ? { did: who } : null
    },
    announce: async () => {},
    csrf: () => 'form-token-2',
    render: (c, fragment, status = 200) => c.html(fragment, status),
    publish: async (account, record) => `at://${account.did}/email.atmos.attestation/${record.domain}`,
    readLabels: labelReader({ baseUrl: labeler.url, labelerDid: LABELER, timeoutMs: 2000 }),
    ...rest,
  })
}

async function labelsOf(a: ReturnType<typeof app>, who: string, domain: string) {
  const res = await a.request(`/${domain}/labels`, { headers: { 'x-test-did': who } })
  return { status: res.status, body: (await res.json()) as WatchState & { error?: string } }
}

async function verifiedAtLabeler(who: string, domain: string) {
  await sql`
    insert into verification_status (did, domain, holds, last_outcome, last_run_at)
    values (${who}, ${domain}, true, 'pass', now())
    on conflict (did, domain) do update set holds = true, last_outcome = 'pass'`
}

describe('the labels page after publishing', () => {
  it('publishes with an audit row, then shows the labels in the order the labeler gives them', async () => {
    const alice = did('labelsa')
    const bob = did('labelsb')
    const domain = 'labels-a.example'
    await startEnrolment(sql, keyring, { did: alice, domain, maxDomains: 2 })
    await startEnrolment(sql, keyring, { did: bob, domain: 'labels-b.example', maxDomains: 2 })
    const a = app()
    const as = { 'x-test-did': alice }

    const published = await a.request(`/${domain}/publish`, { method: 'POST', headers: as })
    assert.equal(published.status, 303, 'the publish POST redirects: a reload must not publish again')
    assert.equal(published.headers.get('location'), `/enroll/${domain}/watch`)
    const [audit] = await sql<{ actor: string; memberId: number | null; detail: { uri: string } }[]>`
      select actor, member_id::int as "memberId", detail from audit_log
      where action = 'attestation.published' and did = ${alice} and domain = ${domain}`
    assert.equal(audit?.actor, `admin:${alice}`)
    assert.ok(audit?.memberId)
    assert.equal(audit?.detail.uri, `at://${alice}/email.atmos.attestation/${domain}`)

    // Nothing yet: the labeler has not seen the record. Bob's labels, which the stand-in serves
    // to anyone, are never Alice's.
    labeler.label(bob, 'verified-mail-operator')
    labeler.label(bob, 'relay-member')
    let r = await labelsOf(a, alice, domain)
    assert.equal(r.status, 200)
    assert.deepEqual(r.body.labels, [])
    assert.equal(r.body.verified, false)
    assert.equal(r.body.member, false)
    assert.equal(r.body.stage, 'verifying')
    assert.equal(r.body.overdue, false)
    assert.equal(r.body.reason, undefined)
    assert.match(r.body.diagnosis.join(' '), /has not seen the record yet/)
    const asked = labeler.queries.at(-1)!
    assert.deepEqual(asked.searchParams.getAll('uriPatterns'), [alice], 'the query names the session DID only')

    const page = await (await a.request(`/${domain}/watch`, { headers: as })).text()
    assert.match(page, /at:\/\/did:plc:labelsa[^<]*\/email\.atmos\.attestation\/labels-a\.example/)
    assert.match(page, /data-watch="\/enroll\/labels-a\.example\/labels"/)
    assert.match(page, /data-timeout="3600000"/)
    assert.match(page, /<section id="labels-activate" hidden>/, 'no activation before the verdict')
    assert.match(page, /<section id="labels-help" hidden>/, 'no explanation before the timeout')
    assert.match(page, /relay-member<\/strong> comes only after you activate/)
    assert.doesNotMatch(page, /did:plc:labelsb/)

    // The labeler verified: verified-mail-operator is on the account and activation is next.
    await verifiedAtLabeler(alice, domain)
    labeler.label(alice, 'verified-mail-operator')
    r = await labelsOf(a, alice, domain)
    assert.deepEqual(
      r.body.labels.map((l) => l.val),
      ['verified-mail-operator'],
    )
    assert.equal(r.body.verified, true)
    assert.equal(r.body.member, false)
    assert.equal(r.body.stage, 'activate')
    const ready = await (await a.request(`/${domain}/watch`, { headers: as })).text()
    assert.match(ready, /<section id="labels-activate">/)
    assert.match(ready, /action="\/enroll\/labels-a\.example\/activate"/)

    const activated = await a.request(`/${domain}/activate`, { method: 'POST', headers: as })
    assert.equal(activated.status, 303)
    assert.equal(activated.headers.get('location'), `/enroll/${domain}/watch`)
    r = await labelsOf(a, alice, domain)
    assert.equal(r.body.stage, 'member', 'relay-member comes after the activation')
    assert.match(r.body.diagnosis.join(' '), /relay-member follows/)
    const active = await (await a.request(`/${domain}/watch`, { headers: as })).text()
    assert.match(active, /<section id="labels-credentials">/, 'credentials are offered once active')

    // Should the verdict stop holding meanwhile, the page says that rather than "relay-member follows".
    await sql`update verification_status set holds = false, last_outcome = 'temperror' where did = ${alice} and domain = ${domain}`
    r = await labelsOf(a, alice, domain)
    assert.equal(r.body.stage, 'member')
    assert.match(r.body.diagnosis.join(' '), /temporary DNS error/)
    assert.doesNotMatch(r.body.diagnosis.join(' '), /relay-member follows/)
    await verifiedAtLabeler(alice, domain)

    labeler.label(alice, 'relay-member')
    r = await labelsOf(a, alice, domain)
    assert.equal(r.body.stage, 'done')
    assert.equal(r.body.verified && r.body.member, true)
    assert.deepEqual(r.body.diagnosis, [])
  })

  it('answers only for a domain the session DID holds, and only when signed in', async () => {
    const a = app()
    const foreign = await labelsOf(a, did('labelsb'), 'labels-a.example')
    assert.equal(foreign.status, 404)
    assert.equal(foreign.body.error, 'NotFound')
    assert.equal(JSON.stringify(foreign.body).includes('verified-mail-operator'), false)
    const page = await a.request('/labels-a.example/watch', { headers: { 'x-test-did': did('labelsb') } })
    assert.equal(page.status, 404)
    const anonymous = await a.request('/labels-a.example/labels')
    assert.equal(anonymous.status, 403)
    const bad = await labelsOf(a, did('labelsa'), 'not a domain')
    assert.equal(bad.status, 404, 'a name the account does not hold, whatever it is')
    assert.equal((await a.request('/labels-a.example/labels')).headers.get('content-type'), 'application/json')
  })

  it('after the timeout explains the wait: a check failed at the labeler, with a way to check again', async () => {
    const carol = did('labelsc')
    const domain = 'labels-c.example'
    await startEnrolment(sql, keyring, { did: carol, domain, maxDomains: 2 })
    const late = app({ labelsTimeout: 0 })
    await late.request(`/${domain}/publish`, { method: 'POST', headers: { 'x-test-did': carol } })
    await sql`
      insert into attestations (did, rkey, domain, dkim_selectors, relay_member)
      values (${carol}, ${domain}, ${domain}, '{atmos1r,atmos1e}', true)`
    const [run] = await sql<{ id: number }[]>`
      insert into verification_runs (did, domain, trigger, outcome, finished_at)
      values (${carol}, ${domain}, 'ingest', 'fail', now()) returning id::int as id`
    await sql`
      insert into verification_checks (run_id, "check", outcome, reason)
      values (${run!.id}, 'dkim', 'fail', 'no TXT record at atmos1r._domainkey.labels-c.example'),
             (${run!.id}, 'mx', 'pass', 'ok')`
    await sql`
      insert into verification_status (did, domain, holds, last_run_id, last_outcome, last_run_at)
      values (${carol}, ${domain}, false, ${run!.id}, 'fail', now())`
    const r = await labelsOf(late, carol, domain)
    assert.equal(r.body.stage, 'verifying')
    assert.equal(r.body.overdue, true)
    assert.equal(r.body.failedAtLabeler, true)
    assert.match(r.body.diagnosis.join(' '), /A check failed at the labeler \(dkim: no TXT record at atmos1r/)
    assert.doesNotMatch(r.body.diagnosis.join(' '), /mx: ok/)
    const page = await (await late.request(`/${domain}/watch`, { headers: { 'x-test-did': carol } })).text()
    assert.match(page, /<section id="labels-help">/, 'the explanation is server-rendered, no script needed')
    assert.match(page, /A check failed at the labeler/)
    assert.match(page, /action="\/enroll\/labels-c\.example\/check"/)
    assert.match(
      page,
      /<form method="get" action="\/enroll\/labels-c\.example\/watch"><button type="submit">Look again/,
    )
  })

  it('says the labeler is unreachable when it is, and that it has not seen the record', async () => {
    const dave = did('labelsd')
    const domain = 'labels-d.example'
    await startEnrolment(sql, keyring, { did: dave, domain, maxDomains: 2 })
    const away = app({
      labelsTimeout: 0,
      readLabels: labelReader({ baseUrl: `http://127.0.0.1:${await closedPort()}`, timeoutMs: 2000 }),
    })
    await away.request(`/${domain}/publish`, { method: 'POST', headers: { 'x-test-did': dave } })
    const r = await labelsOf(away, dave, domain)
    assert.equal(r.status, 200)
    assert.equal(r.body.reason, 'the labeler could not be reached')
    assert.equal(r.body.overdue, true)
    assert.match(r.body.diagnosis[0]!, /labeler is unreachable from here: the labeler could not be reached/)
    assert.match(r.body.diagnosis.join(' '), /has not seen the record yet/)
    const page = await (await away.request(`/${domain}/watch`, { headers: { 'x-test-did': dave } })).text()
    assert.match(page, /The labels could not be read: the labeler could not be reached\./)
  })
})

describe('the labels page before publishing', () => {
  it('says the attestation was not published from the wizard rather than blaming the labeler', async () => {
    const gina = did('labelsg')
    const domain = 'labels-g.example'
    await startEnrolment(sql, keyring, { did: gina, domain, maxDomains: 2 })
    const r = await labelsOf(app(), gina, domain)
    assert.equal(r.body.stage, 'verifying')
    assert.equal(r.body.overdue, true, 'nothing to wait for')
    assert.deepEqual(r.body.diagnosis, [
      'The attestation has not been published from this wizard: check the records, then publish it.',
    ])
  })
})

describe('/enroll resumes', () => {
  it('lists the account’s own domains with the step each is at and where to continue', async () => {
    const erin = did('labelse')
    const a = app()
    await startEnrolment(sql, keyring, { did: erin, domain: 'resume-a.example', maxDomains: 3 })
    await startEnrolment(sql, keyring, { did: erin, domain: 'resume-b.example', maxDomains: 3 })
    await startEnrolment(sql, keyring, { did: erin, domain: 'resume-c.example', maxDomains: 3 })
    await a.request('/resume-b.example/publish', { method: 'POST', headers: { 'x-test-did': erin } })
    await verifiedAtLabeler(erin, 'resume-c.example')
    const page = await (await a.request('/', { headers: { 'x-test-did': erin } })).text()
    assert.match(page, /<h2>Your domains<\/h2>/)
    const row = (domain: string) => {
      const at = page.indexOf(`<th scope="row">${domain}</th>`)
      assert.ok(at >= 0, `${domain} is listed`)
      return page.slice(at, page.indexOf('</tr>', at))
    }
    assert.match(row('resume-a.example'), /Publish the DNS records and check them.*href="\/enroll\/resume-a\.example"/s)
    assert.match(
      row('resume-b.example'),
      /Published: waiting for the labeler.*href="\/enroll\/resume-b\.example\/watch"/s,
    )
    assert.match(row('resume-c.example'), /Verified: activate the domain.*href="\/enroll\/resume-c\.example\/watch"/s)
    assert.doesNotMatch(page, /labels-a\.example/, 'another account’s domains are not listed')

    // Activated: the credentials are next; with a credential the wizard is done.
    const as = { 'x-test-did': erin }
    assert.equal((await a.request('/resume-c.example/activate', { method: 'POST', headers: as })).status, 303)
    let later = await (await a.request('/', { headers: as })).text()
    assert.match(later, /Active: issue the credentials<\/td>\s*<td><a href="\/enroll\/resume-c\.example\/credentials"/)
    assert.equal((await a.request('/resume-c.example/credentials', { method: 'POST', headers: as })).status, 200)
    later = await (await a.request('/', { headers: as })).text()
    assert.match(later, /resume-c\.example<\/th><td>Enrolled<\/td>\s*<td><a href="\/account"/)

    const fresh = await (await a.request('/', { headers: { 'x-test-did': did('labelsf') } })).text()
    assert.doesNotMatch(fresh, /Your domains/)
    assert.match(fresh, /<label for="domain">Mail domain<\/label>/)
  })
})
