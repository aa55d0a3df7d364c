import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db } from '@atmos/db'
import { startEnrolment } from '@atmos/enrolment'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, loadKeyring } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase, TestDnsServer } from '@atmos/testkit'
import type { Browser, BrowserContext, Page } from '@atmos/testkit/browser'
import { launchBrowser } from '@atmos/testkit/browser'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'
import { BrowserSteps, signedInContext } from './browser-harness.ts'

// The wizard's last mile in a real browser (Debian's chromium): the copy buttons on the DNS
// records and the credentials, the labels page picking up labels as a stand-in labeler starts
// answering them (activation in between), and its explanation after the timeout. Signing in
// and writing to a real PDS are signin.e2e.test.ts's and the join test's: here a session row
// stands in for a sign-in and an audit row for the publish. Every page: no console errors, axe.

const LABELER = 'did:plc:labelerlabelerlabelerla'
const ALICE = 'did:plc:wizardalicewizardalicewi'
const DOMAIN = 'wizard.example'
const LATE = 'late.example'
/** Short, so the explanation shows within the test; long enough for two polls on a busy machine. */
const LABELS_TIMEOUT_S = 8

/** Our labeler's queryLabels, answering the labels a test gives it. */
class StandInLabeler {
  labels: { src: string; uri: string; val: string; cts: string }[] = []
  private server: Server | undefined
  url = ''
  async start() {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://labeler')
      const uris = url.searchParams.getAll('uriPatterns')
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ labels: this.labels.filter((l) => uris.includes(l.uri)) }))
    })
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`
  }
  label(uri: string, val: string) {
    this.labels.push({ src: LABELER, uri, val, cts: new Date().toISOString() })
  }
  async close() {
    await new Promise((resolve) => this.server?.close(resolve))
  }
}

let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
let browser: Browser
const dns = new TestDnsServer()
const labeler = new StandInLabeler()
let steps: BrowserSteps

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const dir = mkdtempSync(join(tmpdir(), 'atmos-wizard-'))
  createKeyringFile(join(dir, 'kek'))
  createKeyringFile(join(dir, 'relay-kek'))
  await dns.start()
  dns.zone = {
    '_spf.pool.example': { TXT: ['v=spf1 ip4:203.0.113.0/24 -all'] },
    [DOMAIN]: { MX: [{ priority: 10, exchange: `mx.${DOMAIN}` }] },
  }
  await labeler.start()
  const env = {
    ATMOS_DATABASE_URL: tdb.url,
    ATMOS_HTTP_PORT: '0',
    ATMOS_ADMIN_WEB_PORT: '0',
    ATMOS_ADMIN_KEK_FILE: join(dir, 'kek'),
    ATMOS_ADMIN_ENROLL_KEK_FILE: join(dir, 'relay-kek'),
    ATMOS_ADMIN_ENROLL_SPF_INCLUDE: '_spf.pool.example',
    ATMOS_ADMIN_ENROLL_DNS_SERVERS: dns.address,
    ATMOS_ADMIN_ENROLL_DNS_TIMEOUT: '1s',
    ATMOS_ADMIN_ENROLL_LABELS_TIMEOUT: `${LABELS_TIMEOUT_S}s`,
    ATMOS_ADMIN_LABELER_URL: labeler.url,
    ATMOS_ADMIN_LABELER_DID: LABELER,
  }
  service = new AdminService(createContext(loadConfig(adminConfigSchema, { env })))
  Object.assign(service.ctx, { logger: createLogger('admin', process.env.ATMOS_TEST_LOG ?? 'silent') })
  await service.start()
  await service.whenStarted()
  base = service.webUrl!
  const keyring = loadKeyring(join(dir, 'relay-kek'))
  for (const domain of [DOMAIN, LATE]) await startEnrolment(db.$client, keyring, { did: ALICE, domain, maxDomains: 2 })
  browser = await launchBrowser()
  steps = new BrowserSteps(browser, 'atmos-wizard-shots-')
})

after(async () => {
  console.log(`screenshots: ${steps?.dir}`)
  await browser?.close()
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
  await dns.close()
  await labeler.close()
  assert.deepEqual(steps.errorsSoFar(), [], 'no console errors on any page')
})

/** A browser signed in as `did` (a session row as the sign-in makes one, and its cookie). */
const signedIn = (did: string, opts: { javaScript?: boolean } = {}): Promise<BrowserContext> =>
  signedInContext(browser, {
    db,
    adminUrl: base,
    did,
    context: { javaScriptEnabled: opts.javaScript ?? true, permissions: ['clipboard-read', 'clipboard-write'] },
  })

/** A page whose console errors are kept. */
const newPage = (context: BrowserContext): Promise<Page> => steps.newPage(context)

/** What the page's clipboard holds (the tests' tsconfig has no DOM types: an expression string). */
const clipboardOf = (page: Page) => page.evaluate('navigator.clipboard.readText()') as Promise<string>

/** A page of ours: no axe violation, no sideways scrolling, and a screenshot kept for people. */
const checkPage = (page: Page, name: string) => steps.check(page, name)

/** What the publish step records (the PDS write itself is the join test's). */
async function published(domain: string) {
  await db.$client`
    insert into audit_log (actor, action, did, domain, detail)
    values (${`admin:${ALICE}`}, 'attestation.published', ${ALICE}, ${domain},
            ${JSON.stringify({ uri: `at://${ALICE}/email.atmos.attestation/${domain}` })}::text::jsonb)`
}

describe('the wizard’s last mile in a real browser', () => {
  it('copies a DNS value and a zone-file line with a button, saying so; no buttons without script', async () => {
    const context = await signedIn(ALICE)
    const page = await newPage(context)
    await page.goto(`${base}/enroll/${DOMAIN}`)
    const value = page.locator('[data-copy-label]').first()
    const button = page.getByRole('button', { name: /^Copy the TXT value of atmos1r\._domainkey\.wizard\.example$/ })
    await button.click()
    await page.getByRole('status').filter({ hasText: 'Copied' }).first().waitFor()
    assert.equal(await clipboardOf(page), await value.textContent())
    const line = page.getByRole('button', { name: `Copy the zone-file line of _dmarc.${DOMAIN}` })
    await line.click()
    assert.match(await clipboardOf(page), /^_dmarc\.wizard\.example\. IN TXT "v=DMARC1;/)
    await checkPage(page, 'records-copied')
    await context.close()

    const plain = await signedIn(ALICE, { javaScript: false })
    const noScript = await plain.newPage()
    await noScript.goto(`${base}/enroll/${DOMAIN}`)
    assert.equal(await noScript.getByRole('button', { name: /^Copy/ }).count(), 0)
    assert.ok((await noScript.locator('pre').count()) > 0, 'the lines are there to select by hand')
    await plain.close()
  })

  it('lists the domains in progress on /enroll', async () => {
    const context = await signedIn(ALICE)
    const page = await newPage(context)
    await page.goto(`${base}/enroll`)
    await page.getByRole('link', { name: `Continue: ${DOMAIN}` }).waitFor()
    await checkPage(page, 'enroll-list')
    await context.close()
  })

  it('watches the labels appear, activates, watches relay-member come, and copies the credentials', async () => {
    await published(DOMAIN)
    const context = await signedIn(ALICE)
    const page = await newPage(context)
    await page.goto(`${base}/enroll/${DOMAIN}/watch`)
    const status = page.locator('#labels-status')
    assert.equal(await status.textContent(), 'Waiting for the labeler to verify the attestation.')
    assert.equal(await page.getByRole('button', { name: 'Activate the domain' }).isVisible(), false)
    await checkPage(page, 'labels-waiting')

    // The labeler verifies: its verdict in the shared database, the label on its endpoint.
    await db.$client`
      insert into verification_status (did, domain, holds, last_outcome, last_run_at)
      values (${ALICE}, ${DOMAIN}, true, 'pass', now())`
    labeler.label(ALICE, 'verified-mail-operator')
    await page.getByRole('button', { name: 'Activate the domain' }).waitFor({ state: 'visible', timeout: 15_000 })
    assert.equal(await status.textContent(), 'The labeler verified the attestation: activate the domain.')
    assert.match((await page.locator('#labels-list').textContent()) ?? '', /verified-mail-operator since/)
    await checkPage(page, 'labels-verified')

    await page.getByRole('button', { name: 'Activate the domain' }).click()
    await page.waitForURL(`${base}/enroll/${DOMAIN}/watch`)
    assert.equal(await status.textContent(), 'The domain is active: waiting for relay-member.')
    labeler.label(ALICE, 'relay-member')
    await page.getByText('Both labels are on your account.').waitFor({ timeout: 15_000 })
    assert.match((await page.locator('#labels-list').textContent()) ?? '', /relay-member since/)
    await checkPage(page, 'labels-done')

    await page.getByRole('button', { name: 'Issue credentials' }).click()
    const pds = page.getByRole('button', { name: 'Copy the For a PDS (pds.env)' })
    await pds.click()
    const copied = await clipboardOf(page)
    assert.match(copied, /^PDS_EMAIL_SMTP_URL=smtp:\/\/wizard\.example:/m)
    assert.equal(copied, await page.locator('pre').first().textContent())
    await checkPage(page, 'credentials-copied')
    await context.close()
  })

  it('stops after the timeout and explains the wait, as the page without script does', async () => {
    await published(LATE)
    const context = await signedIn(ALICE)
    const page = await newPage(context)
    await page.goto(`${base}/enroll/${LATE}/watch`)
    assert.equal(await page.locator('#labels-help').isVisible(), false)
    const help = page.getByRole('heading', { name: 'Still waiting?' })
    await help.waitFor({ state: 'visible', timeout: (LABELS_TIMEOUT_S + 10) * 1000 })
    assert.match((await page.locator('#labels-diagnosis').textContent()) ?? '', /has not seen the record yet/)
    assert.ok(await page.getByRole('button', { name: 'Check the records again' }).isVisible())
    await checkPage(page, 'labels-timeout')
    await context.close()

    // Without script the "Look again" button reloads the page, which says the same once overdue.
    const plain = await signedIn(ALICE, { javaScript: false })
    const noScript = await plain.newPage()
    await noScript.goto(`${base}/enroll/${LATE}/watch`)
    await noScript.getByRole('button', { name: 'Look again' }).click()
    await noScript.getByRole('heading', { name: 'Still waiting?' }).waitFor({ state: 'visible' })
    await plain.close()
  })
})
