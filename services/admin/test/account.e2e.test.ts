import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db } from '@atmos/db'
import { addMember } from '@atmos/enrolment'
import { suppress } from '@atmos/reputation'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, loadKeyring } from '@atmos/secrets'
import { closedPort, createTestDatabase, type TestDatabase } from '@atmos/testkit'
import type { Browser, Page } from '@atmos/testkit/browser'
import { launchBrowser } from '@atmos/testkit/browser'
import { sql } from 'drizzle-orm'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'
import { BrowserSteps, signedInContext } from './browser-harness.ts'

// The member's account pages in a real browser (Debian's chromium): a member with a domain,
// mail, suppressions and labels, signed in by a session row (signin.e2e.test.ts covers the
// atproto sign-in itself). Every page: no console error, no axe violation; the confirm
// dialog of a lift, and the typed confirmation of a removal, as a person meets them.

const LABELER = 'did:plc:ourlabelerourlabelerourl'

let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
let browser: Browser
let labeler: Server
let did: string
let steps: BrowserSteps

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const dir = mkdtempSync(join(tmpdir(), 'atmos-account-e2e-'))
  createKeyringFile(join(dir, 'kek'))
  createKeyringFile(join(dir, 'relay-kek'))
  labeler = createServer((req, res) => {
    const uri = new URL(req.url ?? '/', 'http://x').searchParams.get('uriPatterns')
    const labels = [
      { src: LABELER, uri, val: 'verified-mail-operator', cts: new Date().toISOString(), exp: '2099-01-01T00:00:00Z' },
      { src: LABELER, uri, val: 'relay-member', cts: new Date().toISOString() },
    ]
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ labels }))
  })
  await new Promise<void>((r) => labeler.listen(0, '127.0.0.1', r))
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: join(dir, 'kek'),
      ATMOS_ADMIN_ENROLL_KEK_FILE: join(dir, 'relay-kek'),
      ATMOS_ADMIN_LABELER_URL: `http://127.0.0.1:${(labeler.address() as AddressInfo).port}`,
      ATMOS_ADMIN_LABELER_DID: LABELER,
      ATMOS_ADMIN_OAUTH_PLC_URL: `http://127.0.0.1:${await closedPort()}`,
    },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', process.env.ATMOS_TEST_LOG ?? 'silent') })
  await service.start()
  await service.whenStarted()
  base = service.webUrl!

  did = 'did:plc:eeaccounteeaccounteeacco'
  const m = await addMember(db.$client, loadKeyring(join(dir, 'relay-kek')), {
    did,
    domain: 'e2e-account.example',
    maxDomains: 2,
    actor: 'operator:test',
  })
  await db.execute(sql`
    insert into messages (id, member_id, domain_id, envelope_from, return_path, message_id_header, size, body,
                          expires_at, received_at, state)
    select gen_random_uuid(), ${m.id}, ${m.domainId}, 'news@e2e-account.example', 'b+x@pool.example',
           '<n' || g || '@e2e-account.example>', 3, '\\x616263'::bytea, now() + interval '3 days',
           now() - (g * 7 || ' minutes')::interval, 'done'
    from generate_series(1, 12) g`)
  await db.execute(sql`
    insert into message_recipients (message_id, address, domain, state, attempts, last_reply)
    select id, 'friend@r.example', 'r.example', case when received_at < now() - interval '1 hour' then 'bounced'
           else 'delivered' end, 1, '250 2.0.0 ok'
    from messages where member_id = ${m.id}`)
  await suppress(db, { memberId: m.id, address: 'gone@r.example', reason: 'hard_bounce', detail: '550 5.1.1 unknown' })
  await suppress(db, { memberId: m.id, address: 'angry@r.example', reason: 'complaint' })
  browser = await launchBrowser()
  steps = new BrowserSteps(browser, 'atmos-account-shots-')
})

after(async () => {
  console.log(`screenshots: ${steps?.dir}`)
  await browser?.close()
  await service?.destroy()
  await new Promise<void>((r) => (labeler ? labeler.close(() => r()) : r()))
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

/** A page signed in as `as`, its console errors kept. */
const signedInPage = async (as = did): Promise<Page> =>
  steps.newPage(await signedInContext(browser, { db, adminUrl: base, did: as }))

/** A page of ours: no console error, no axe violation, no sideways scrolling, and a screenshot kept for people. */
const checkPage = (page: Page, name: string) => steps.check(page, name)

describe('the account pages in a real browser', () => {
  it('shows the account, the figures of each window, the log, the list and the domain pages cleanly', async () => {
    const page = await signedInPage()
    const visits: Array<[string, string, RegExp]> = [
      ['/account', 'account', /relay-member/],
      ['/account?window=7d', 'account-7d', /Mail over the last 7 days/],
      ['/account?window=30d', 'account-30d', /Mail over the last 30 days/],
      ['/account/messages', 'messages', /friend@r\.example/],
      ['/account/messages?field=messageId&q=n3%40e2e-account.example', 'messages-search', /n3@e2e-account\.example/],
      ['/account/suppressions', 'suppressions', /gone@r\.example/],
      ['/account/domains/e2e-account.example', 'domain', /Forward replies/],
      ['/account/domains/e2e-account.example/remove', 'domain-remove', /Type the domain name to confirm/],
    ]
    for (const [path, name, expect] of visits) {
      const res = await page.goto(`${base}${path}`)
      assert.equal(res?.status(), 200, path)
      assert.match((await page.locator('main').textContent()) ?? '', expect, path)
      await checkPage(page, name)
    }
    await page.close()
  })

  it('lifts a bounce after the confirm dialog; an error page for a bad forward-to passes axe too', async () => {
    const page = await signedInPage()
    await page.goto(`${base}/account/suppressions`)
    page.once('dialog', (d) => void d.accept())
    await page.getByRole('button', { name: 'Lift gone@r.example' }).click()
    await page.waitForURL((u) => u.search === '?lifted=1')
    assert.equal(await page.getByText('gone@r.example').count(), 0)
    await checkPage(page, 'suppressions-lifted')

    await page.goto(`${base}/account/domains/e2e-account.example`)
    // The browser's own check would stop a malformed address; this one is well-formed but ours refuses it.
    await page.getByLabel('Forward replies to this address').fill('me@e2e-account.example')
    await page.getByRole('button', { name: 'Save the address' }).click()
    await page.getByRole('alert').waitFor()
    assert.match((await page.getByRole('alert').textContent()) ?? '', /would come back/)
    await checkPage(page, 'domain-forward-error')
    await page.close()
  })

  it('shows an account that has no domain yet cleanly, with the way to enrol', async () => {
    const page = await signedInPage('did:plc:nodomainyetnodomainyetnod')
    assert.equal((await page.goto(`${base}/account`))?.status(), 200)
    assert.equal(await page.getByRole('link', { name: 'Enrol a mail domain' }).count(), 1)
    await checkPage(page, 'account-no-domain')
    for (const path of ['/account/messages', '/account/suppressions']) {
      assert.equal((await page.goto(`${base}${path}`))?.status(), 200, path)
      await checkPage(page, `no-domain-${path.split('/').pop()}`)
    }
    await page.close()
  })

  it('logged no console error on any page', () => {
    assert.deepEqual(steps.consoleErrors, [])
  })
})
