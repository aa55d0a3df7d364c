import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createDb, type Db, dmarcReports, domains, members, webSessions } from '@atmos/db'
import { googleReport, microsoftReport, plainXmlReport, type ReportSpec } from '@atmos/fbl-ingest/dmarc-reports'
import { sendToMx } from '@atmos/fbl-ingest/test-harness'
import { createKeyringFile } from '@atmos/secrets'
import {
  closedPort,
  createTestDatabase,
  reverseName,
  ServiceProcess,
  TEST_REDIS_URL,
  type TestDatabase,
  TestDnsServer,
  testRedisPrefix,
} from '@atmos/testkit'
import { isNotNull } from 'drizzle-orm'

// A member's DMARC reports from the wire to the account page: fbl-ingest and the admin each
// their own process, configured by ATMOS_* variables as deployed, on one database. Three
// receivers' reports (a Google-style zip, a Microsoft-style gzip, plain XML) go over SMTP to
// fbl-ingest's report mailbox; the member's domain page then shows, for that day, the pool's
// address apart from a spoofer's, with reverse names from the configured DNS, escaped.

const POOL = 'pool.example'
const MAILBOX = `dmarc@${POOL}`
const START_WAIT = 90_000
const entry = (pkg: string) => new URL('./index.ts', import.meta.resolve(pkg))

let tdb: TestDatabase
let db: Db
let dns: TestDnsServer
let fbl: ServiceProcess
let admin: ServiceProcess
let smtp: { host: string; port: number }
let adminUrl: string
const prefix = testRedisPrefix('dmarc-e2e')
const did = `did:plc:${'dmarcmember'.padEnd(24, 'a')}`
const otherDid = `did:plc:${'dmarcother'.padEnd(24, 'b')}`
const domain = 'reports-member.example'
let cookie: string

// Yesterday (UTC), as a receiver reports the day before.
const day = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10)
const begin = Date.parse(`${day}T00:00:00Z`) / 1000

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 2 })
  const [m] = await db.insert(members).values({ did, status: 'active', activatedAt: new Date() }).returning()
  await db.insert(domains).values({ memberId: m!.id, domain, status: 'active', activatedAt: new Date() })
  const [o] = await db.insert(members).values({ did: otherDid, status: 'active', activatedAt: new Date() }).returning()
  await db.insert(domains).values({ memberId: o!.id, domain: 'someone-else.example', status: 'active' })
  const id = randomBytes(32).toString('base64url')
  await db.insert(webSessions).values({
    idHash: createHash('sha256').update(id).digest('base64url'),
    did,
    expiresAt: new Date(Date.now() + 3_600_000),
  })
  cookie = `atmos_session=${id}`

  dns = new TestDnsServer()
  dns.set(reverseName('192.0.2.25'), { PTR: ['relay.pool.example'] })
  dns.set(reverseName('203.0.113.9'), { PTR: ['<b>spoofer</b>.example'] })
  dns.set(reverseName('198.51.100.77'), { PTR: ['mail.forgotten-crm.example'] })
  await dns.start()

  const dir = mkdtempSync(join(tmpdir(), 'atmos-dmarc-e2e-'))
  const secret = join(dir, 'token.secret')
  writeFileSync(secret, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 })
  createKeyringFile(join(dir, 'admin-kek'))
  const shared = {
    ATMOS_DATABASE_URL: tdb.url,
    ATMOS_REDIS_URL: TEST_REDIS_URL,
    ATMOS_REDIS_PREFIX: prefix,
    ATMOS_HTTP_PORT: '0',
    ATMOS_LOG_LEVEL: 'info',
  }
  fbl = new ServiceProcess(entry('@atmos/fbl-ingest'), {
    ...shared,
    ATMOS_FBL_INGEST_POOL_DOMAIN: POOL,
    ATMOS_FBL_INGEST_POOL_BOUNCE_DOMAIN: `bounces.${POOL}`,
    ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE: secret,
    ATMOS_FBL_INGEST_SMTP_PORT: '0',
    ATMOS_FBL_INGEST_DNS_SERVERS: dns.address,
    ATMOS_FBL_INGEST_DMARC_MAILBOX: 'dmarc',
    ATMOS_FBL_INGEST_DMARC_POOL_IPS: '192.0.2.0/24',
  })
  admin = new ServiceProcess(entry('@atmos/admin'), {
    ...shared,
    ATMOS_ADMIN_WEB_PORT: '0',
    ATMOS_ADMIN_KEK_FILE: join(dir, 'admin-kek'),
    ATMOS_ADMIN_LABELER_URL: '',
    ATMOS_ADMIN_OAUTH_PLC_URL: `http://127.0.0.1:${await closedPort()}`,
    ATMOS_ADMIN_ENROLL_DMARC_RUA: MAILBOX,
  })
  const [listening, web] = await Promise.all([
    fbl.waitForLog((l) => l.msg === 'inbound smtp listening', START_WAIT),
    admin.waitForLog((l) => l.msg === 'admin web endpoint listening', START_WAIT),
  ])
  const [host, port] = String(listening.smtp).split(':')
  smtp = { host: host!, port: Number(port) }
  adminUrl = String(web.web)
})

after(async () => {
  await Promise.all([fbl?.stop(), admin?.stop()])
  await dns?.close()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

const spec = (over: Partial<ReportSpec>): ReportSpec => ({
  org: 'google.com',
  email: 'noreply-dmarc-support@google.com',
  reportId: randomBytes(8).toString('hex'),
  domain,
  begin,
  rows: [],
  ...over,
})

async function send(message: string): Promise<void> {
  const reply = await sendToMx(smtp, { from: 'reports@receiver.example', to: [MAILBOX] }, message)
  assert.match(reply, /^250 2\.0\.0 Ok: stored as \d+/)
}

async function page(path: string, as = cookie) {
  const res = await fetch(`${adminUrl}${path}`, { headers: { cookie: as }, redirect: 'manual' })
  return { status: res.status, body: await res.text() }
}

describe('DMARC reports reach the member’s account', () => {
  it('three receivers’ reports over SMTP end as one day on the domain’s DMARC page', async () => {
    await send(
      googleReport(
        spec({
          rows: [
            { ip: '192.0.2.25', count: 120, headerFrom: domain },
            {
              ip: '203.0.113.9',
              count: 17,
              dkim: 'fail',
              spf: 'fail',
              disposition: 'reject',
              headerFrom: domain,
              dkimAuth: [{ domain: 'spoofer.example', result: 'pass' }],
            },
          ],
        }),
        MAILBOX,
      ),
    )
    await send(
      microsoftReport(
        spec({
          org: 'Enterprise Outlook',
          email: 'dmarcreport@microsoft.com',
          rows: [
            { ip: '192.0.2.25', count: 30, headerFrom: domain },
            { ip: '198.51.100.77', count: 4, dkim: 'fail', spf: 'pass', headerFrom: `news.${domain}` },
          ],
        }),
        MAILBOX,
      ),
    )
    await send(
      plainXmlReport(
        spec({
          org: '<i>Tiny</i> & Co',
          email: 'dmarc@tiny.example',
          rows: [{ ip: '192.0.2.25', count: 2, headerFrom: domain }],
        }),
        MAILBOX,
      ),
    )
    // A report about someone else's domain: never on this member's page.
    await send(
      googleReport(
        spec({
          domain: 'someone-else.example',
          rows: [{ ip: '203.0.113.200', count: 99, headerFrom: 'someone-else.example' }],
        }),
        MAILBOX,
      ),
    )
    await waitFor('four reports stored', async () => {
      const rows = await db.select({ id: dmarcReports.id }).from(dmarcReports).where(isNotNull(dmarcReports.memberId))
      return rows.length === 4
    })

    const { status, body } = await page(`/account/domains/${domain}/dmarc`)
    assert.equal(status, 200)
    assert.match(
      body,
      new RegExp(`<tr data-day="${day}">.*?<td>3</td><td>152</td><td>21</td><td>17</td><td>17</td></tr>`),
    )
    const pool = section(body, 'dmarc-pool')
    assert.match(
      pool,
      /<code>192\.0\.2\.25<\/code><\/td><td>relay\.pool\.example<\/td><td>reports-member\.example<\/td><td>152<\/td>/,
    )
    assert.doesNotMatch(pool, /203\.0\.113\.9|198\.51\.100\.77/)
    const others = section(body, 'dmarc-others')
    assert.match(
      others,
      /<code>203\.0\.113\.9<\/code><\/td><td><\/td><td>reports-member\.example<\/td><td>17<\/td><td>fail<\/td><td>fail<\/td><td>reject<\/td>/,
      'a PTR answer that is no host name is left blank',
    )
    assert.match(
      others,
      /<code>198\.51\.100\.77<\/code><\/td><td>mail\.forgotten-crm\.example<\/td><td>news\.reports-member\.example<\/td><td>4<\/td><td>fail<\/td><td>pass<\/td>/,
    )
    assert.doesNotMatch(body, /203\.0\.113\.200|someone-else/)
    // A reporter's name is a stranger's text: escaped, and unauthenticated as such.
    assert.match(body, /&lt;i&gt;Tiny&lt;\/i&gt; &amp; Co \(1 report; sender not authenticated\)/)
    assert.doesNotMatch(body, /<i>Tiny/)
    assert.match(body, /rua=mailto:dmarc@pool\.example/)
    // The domain page links to it.
    assert.match((await page(`/account/domains/${domain}`)).body, new RegExp(`href="/account/domains/${domain}/dmarc"`))
  })

  it('a day outside the window or malformed shows the newest day; another member’s domain is a 404', async () => {
    for (const q of ['?day=1999-01-01', '?day=<script>', '?day=2026-02-30']) {
      const { status, body } = await page(`/account/domains/${domain}/dmarc${q}`)
      assert.equal(status, 200, q)
      assert.match(body, new RegExp(`<h2>${day}</h2>`), q)
      assert.doesNotMatch(body, /<script>/)
    }
    assert.equal((await page('/account/domains/someone-else.example/dmarc')).status, 404)
    assert.equal((await page('/account/domains/no-one.example/dmarc')).status, 404)
    const signedOut = await fetch(`${adminUrl}/account/domains/${domain}/dmarc`, { redirect: 'manual' })
    assert.equal(signedOut.status, 303, 'signed out: sent to sign in')
  })
})

/** The table a data-testid names, up to its end. */
function section(body: string, id: string): string {
  const start = body.indexOf(`data-testid="${id}"`)
  assert.ok(start >= 0, `no ${id} on the page`)
  return body.slice(start, body.indexOf('</table>', start) + 8)
}

async function waitFor(what: string, probe: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${fbl.dump().slice(-4000)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
