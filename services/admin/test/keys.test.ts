import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createDb, type Db, type Pool, webSessions } from '@atmos/db'
import { SigningKeys } from '@atmos/dkim'
import { type AttestationRecord, addMember, verifyApiKey } from '@atmos/enrolment'
import { createKeyringFile, type Keyring, loadKeyring } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase, TestDnsServer } from '@atmos/testkit'
import { checkDkim, createDnsResolver } from '@atmos/verify'
import { Hono } from 'hono'
import { CheckRateLimiter } from '../src/enroll/check.ts'
import { csrfMiddleware } from '../src/web/csrf.ts'
import { keysRoutes } from '../src/web/keys.ts'
import { csrfTokenFor, type SessionVars, sessionMiddleware } from '../src/web/session.ts'

// The account's key pages over the real session and CSRF layers, Postgres and a loopback DNS
// server: API key issue and rotation shown once, DKIM rotation from start to switch (the
// attestation written, the relay's keys switched, the labeler's DKIM check passing on the new
// selectors), another member's domain answering 404, CSRF enforced.

const ORIGIN = 'http://admin.test'
const did = (tag: string) => `did:plc:${tag.padEnd(24, 'z')}`

let tdb: TestDatabase
let db: Db
let sql: Pool
let keyring: Keyring
const dns = new TestDnsServer()
let app: Hono<{ Variables: SessionVars }>
const published: AttestationRecord[] = []
let pdsDown = false

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  sql = db.$client
  const kek = join(mkdtempSync(join(tmpdir(), 'atmos-admin-keys-')), 'kek')
  createKeyringFile(kek)
  keyring = loadKeyring(kek)
  await dns.start()
  app = new Hono<{ Variables: SessionVars }>()
  app.use('*', sessionMiddleware(db, { ttlMs: 3_600_000, secure: false, operators: new Set() }))
  app.use('*', csrfMiddleware(ORIGIN))
  app.route(
    '/',
    keysRoutes({
      sql,
      keyring,
      dns: createDnsResolver({ servers: [dns.address], timeoutMs: 5000, tries: 1 }),
      config: { spfInclude: '_spf.pool.example', checkTimeout: 5000, oldKeyRetention: 4 * 86_400_000 },
      limiter: new CheckRateLimiter(1000, 60_000),
      // Stands in for the member's PDS (the browser test writes to a real one).
      publish: async (account, record) => {
        if (pdsDown) throw new Error('connect ECONNREFUSED')
        published.push(record)
        return `at://${account.did}/email.atmos.attestation/${record.domain}`
      },
    }),
  )
})

after(async () => {
  await sql?.end({ timeout: 5 })
  await dns.close()
  await tdb?.drop()
})

type As = { cookie: string; csrf: string }

async function signIn(d: string): Promise<As> {
  const id = randomBytes(32).toString('base64url')
  await db.insert(webSessions).values({
    idHash: createHash('sha256').update(id).digest('base64url'),
    did: d,
    expiresAt: new Date(Date.now() + 3_600_000),
  })
  return { cookie: `atmos_session=${id}`, csrf: csrfTokenFor(id) }
}

const get = (path: string, as: As) => app.request(path, { headers: { cookie: as.cookie } })
const post = (path: string, as: As, csrf: string | null = as.csrf) =>
  app.request(path, {
    method: 'POST',
    headers: { cookie: as.cookie, 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
    body: new URLSearchParams(csrf === null ? {} : { _csrf: csrf }),
  })

describe('/account/domains/:domain/api-key', () => {
  it('issues and rotates the key, shows it once, and refuses without the CSRF token', async () => {
    const d = did('keysa')
    await addMember(sql, keyring, { did: d, domain: 'keys-a.example' })
    const as = await signIn(d)
    const first = await get('/account/domains/keys-a.example/api-key', as)
    assert.equal(first.status, 200)
    assert.match(await first.text(), /keys-a\.example has no API key/)

    const forged = await post('/account/domains/keys-a.example/api-key', as, null)
    assert.equal(forged.status, 403)
    const wrong = await post('/account/domains/keys-a.example/api-key', as, (await signIn(d)).csrf)
    assert.equal(wrong.status, 403)
    assert.equal((await sql`select 1 from api_keys`).length, 0, 'nothing issued without the token')

    const issued = await post('/account/domains/keys-a.example/api-key', as)
    assert.equal(issued.status, 200)
    assert.equal(issued.headers.get('cache-control'), 'no-store')
    const key = /atmos_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/.exec(await issued.text())?.[0]
    assert.ok(key)
    assert.equal((await verifyApiKey(sql, key))?.domain, 'keys-a.example')
    const [audit] = await sql`select actor, action from audit_log where action like 'api_key.%'`
    assert.deepEqual([audit!.actor, audit!.action], [`admin:${d}`, 'api_key.issued'])

    const later = await (await get('/account/domains/keys-a.example/api-key', as)).text()
    assert.match(later, new RegExp(`atmos_${key.slice(6, 22)}_…`), 'the public id is shown')
    assert.ok(!later.includes(key.slice(23)), 'the secret is not on any later page')
    assert.match(later, /data-confirm="Replace the API key of keys-a\.example\?/)
    assert.ok(!(await (await get('/account/domains/keys-a.example/keys', as)).text()).includes(key.slice(23)))

    const rotated = await (await post('/account/domains/keys-a.example/api-key', as)).text()
    const next = /atmos_[0-9a-f]{16}_[A-Za-z0-9_-]{43}/.exec(rotated)?.[0]
    assert.ok(next && next !== key)
    assert.match(rotated, /no longer works/)
    assert.equal(await verifyApiKey(sql, key), null, 'the old key stopped working')
    assert.ok(await verifyApiKey(sql, next))
  })

  it("answers 404 for another member's domain, an unknown one and a malformed one; signed out goes to sign-in", async () => {
    const owner = did('keysb')
    await addMember(sql, keyring, { did: owner, domain: 'keys-b.example' })
    const other = did('keysc')
    await addMember(sql, keyring, { did: other, domain: 'keys-c.example' })
    const as = await signIn(other)
    for (const path of [
      '/account/domains/keys-b.example/api-key',
      '/account/domains/keys-b.example/keys',
      '/account/domains/nowhere.example/keys',
      '/account/domains/not%20a%20domain/api-key',
    ]) {
      const res = await get(path, as)
      assert.equal(res.status, 404, path)
      assert.match(await res.text(), /is not one of your mail domains/)
    }
    for (const path of [
      '/account/domains/keys-b.example/api-key',
      '/account/domains/keys-b.example/keys/start',
      '/account/domains/keys-b.example/keys/check',
      '/account/domains/keys-b.example/keys/switch',
      '/account/domains/keys-b.example/keys/cancel',
    ]) {
      assert.equal((await post(path, as)).status, 404, path)
    }
    assert.equal(
      (await sql`select 1 from api_keys k join domains d on d.id = k.domain_id where d.domain = 'keys-b.example'`)
        .length,
      0,
    )
    assert.equal((await sql`select 1 from dkim_keys where domain = 'keys-b.example' and status = 'pending'`).length, 0)
    const out = await app.request('/account/domains/keys-b.example/keys')
    assert.equal(out.status, 303)
    assert.equal(out.headers.get('location'), '/')
  })
})

/** Publishes a record as a member's DNS provider would: the value in ≤ 255-octet strings. */
function publishTxt(name: string, value: string) {
  const strings: string[] = []
  for (let i = 0; i < value.length; i += 255) strings.push(value.slice(i, i + 255))
  dns.set(name, { TXT: [strings] })
}

describe('/account/domains/:domain/keys', () => {
  it('rotates: new records shown, checked, switch refused until DNS serves them, then attestation and relay switch', async () => {
    const d = did('keysd')
    const domain = 'keys-d.example'
    const member = await addMember(sql, keyring, { did: d, domain })
    for (const k of member.keys) publishTxt(k.txtName, k.txt)
    const as = await signIn(d)
    const relay = () => new SigningKeys(sql, { members: keyring }, 0).domain(member.domainId)

    const page = await (await get(`/account/domains/${domain}/keys`, as)).text()
    assert.match(page, /atmos1r\._domainkey\.keys-d\.example/)
    assert.match(page, /Start a key rotation/)
    assert.equal((await post(`/account/domains/${domain}/keys/start`, as, null)).status, 403, 'CSRF enforced')
    assert.equal((await sql`select 1 from dkim_keys where domain = ${domain} and status = 'pending'`).length, 0)

    const start = await post(`/account/domains/${domain}/keys/start`, as)
    assert.equal(start.status, 303)
    assert.equal(start.headers.get('location'), `/account/domains/${domain}/keys`)
    const during = await (await get(`/account/domains/${domain}/keys`, as)).text()
    assert.match(during, /atmos2r\._domainkey\.keys-d\.example\. IN TXT &quot;v=DKIM1; k=rsa; p=/)
    assert.match(during, /atmos2e\._domainkey\.keys-d\.example\. IN TXT &quot;v=DKIM1; k=ed25519; p=/)
    assert.doesNotMatch(during, /PRIVATE/)
    const [rsa, ed] = await sql<{ selector: string; public_key: string; algorithm: string }[]>`
      select selector, public_key, algorithm from dkim_keys where domain = ${domain} and status = 'pending'
      order by (algorithm = 'rsa-sha256') desc`

    const early = await (await post(`/account/domains/${domain}/keys/check`, as)).text()
    assert.match(early, /Not yet/)
    assert.match(early, /absent/)
    const refused = await post(`/account/domains/${domain}/keys/switch`, as)
    assert.equal(refused.status, 409)
    assert.equal(published.length, 0, 'no attestation names keys DNS does not serve')
    assert.deepEqual(
      (await relay()).map((k) => k.selector),
      ['atmos1r', 'atmos1e'],
    )

    publishTxt(`${rsa!.selector}._domainkey.${domain}`, `v=DKIM1; k=rsa; p=${rsa!.public_key}`)
    publishTxt(`${ed!.selector}._domainkey.${domain}`, `v=DKIM1; k=ed25519; p=${ed!.public_key}`)
    const ready = await (await post(`/account/domains/${domain}/keys/check`, as)).text()
    assert.match(ready, /Both new records are published/)
    assert.match(ready, /Switch to the new keys/)

    // The PDS refusing the record changes nothing.
    pdsDown = true
    const down = await post(`/account/domains/${domain}/keys/switch`, as)
    pdsDown = false
    assert.equal(down.status, 502)
    assert.equal((await sql`select 1 from dkim_keys where domain = ${domain} and status = 'pending'`).length, 2)

    const switched = await post(`/account/domains/${domain}/keys/switch`, as)
    assert.equal(switched.status, 200)
    const text = await switched.text()
    assert.match(text, /Keep the old records/)
    assert.match(text, /atmos1r\._domainkey\.keys-d\.example/)
    assert.deepEqual(
      published.map((r) => [r.domain, r.dkimSelectors, r.relayMember]),
      [[domain, ['atmos2r', 'atmos2e'], true]],
    )
    assert.deepEqual(
      (await relay()).map((k) => k.selector),
      ['atmos2r', 'atmos2e'],
      'the relay signs with the new keys',
    )
    const [audit] = await sql`select actor, detail from audit_log where action = 'dkim.rotated' and domain = ${domain}`
    assert.equal(audit!.actor, `admin:${d}`)
    assert.equal(audit!.detail.uri, `at://${d}/email.atmos.attestation/${domain}`)
    // The labeler's DKIM check over the new attestation's selectors passes.
    const resolver = createDnsResolver({ servers: [dns.address], timeoutMs: 5000, tries: 1 })
    const check = await checkDkim(domain, published[0]!.dkimSelectors, resolver)
    assert.equal(check.outcome, 'pass', check.reason)

    const after = await (await get(`/account/domains/${domain}/keys`, as)).text()
    assert.match(after, /Keep their records in DNS until/)
    assert.match(after, /Start a key rotation/)
  })

  it('cancels a rotation with confirmation, deleting the new keys', async () => {
    const d = did('keyse')
    const domain = 'keys-e.example'
    await addMember(sql, keyring, { did: d, domain })
    const as = await signIn(d)
    await post(`/account/domains/${domain}/keys/start`, as)
    const page = await (await get(`/account/domains/${domain}/keys`, as)).text()
    assert.match(page, /data-confirm="Cancel the key rotation of keys-e\.example\?/)
    assert.equal((await post(`/account/domains/${domain}/keys/cancel`, as, null)).status, 403)
    assert.equal((await sql`select 1 from dkim_keys where domain = ${domain} and status = 'pending'`).length, 2)
    assert.equal((await post(`/account/domains/${domain}/keys/cancel`, as)).status, 303)
    assert.equal((await sql`select 1 from dkim_keys where domain = ${domain} and status = 'pending'`).length, 0)
    assert.equal((await post(`/account/domains/${domain}/keys/switch`, as)).status, 409)
  })

  it('bounds the checks a DID runs, and says rotation is off without the key file', async () => {
    const d = did('keysf')
    const domain = 'keys-f.example'
    await addMember(sql, keyring, { did: d, domain })
    const as = await signIn(d)
    const strict = new Hono<{ Variables: SessionVars }>()
    strict.use('*', sessionMiddleware(db, { ttlMs: 3_600_000, secure: false, operators: new Set() }))
    strict.use('*', csrfMiddleware(ORIGIN))
    strict.route(
      '/',
      keysRoutes({
        sql,
        keyring: undefined,
        dns: createDnsResolver({ servers: [dns.address], timeoutMs: 5000, tries: 1 }),
        config: { spfInclude: '_spf.pool.example', checkTimeout: 5000, oldKeyRetention: 86_400_000 },
        limiter: new CheckRateLimiter(1, 60_000),
        publish: async () => assert.fail('not reached'),
      }),
    )
    const send = (path: string) =>
      strict.request(path, {
        method: 'POST',
        headers: { cookie: as.cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _csrf: as.csrf }),
      })
    const off = await send(`/account/domains/${domain}/keys/start`)
    assert.equal(off.status, 503)
    assert.match(await off.text(), /not available/)
    await post(`/account/domains/${domain}/keys/start`, as)
    assert.equal((await send(`/account/domains/${domain}/keys/check`)).status, 200)
    const limited = await send(`/account/domains/${domain}/keys/switch`)
    assert.equal(limited.status, 429)
    assert.ok(Number(limited.headers.get('retry-after')) > 0)
  })
})
