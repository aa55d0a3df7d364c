import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db } from '@atmos/db'
import { addMember } from '@atmos/enrolment'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, loadKeyring } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { type Browser, launchBrowser, type Page } from '@atmos/testkit/browser'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'
import { BrowserSteps, signedInContext } from './browser-harness.ts'

// The key pages in a real browser against a real admin (its CSP, static files, session and
// CSRF layers): no console error, no axe violation, the confirm dialogs, the forms' tokens.
// (The switch itself writes to a PDS: keys.test.ts covers it with a stand-in.)

let tdb: TestDatabase
let db: Db
let service: AdminService
let browser: Browser
let base: string
let steps: BrowserSteps
const dir = mkdtempSync(join(tmpdir(), 'atmos-admin-keys-e2e-'))

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 2 })
  createKeyringFile(join(dir, 'admin-kek'))
  createKeyringFile(join(dir, 'relay-kek'))
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: join(dir, 'admin-kek'),
      ATMOS_ADMIN_ENROLL_KEK_FILE: join(dir, 'relay-kek'),
    },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', 'silent') })
  await service.start()
  await service.whenStarted()
  base = service.webUrl!
  browser = await launchBrowser()
  steps = new BrowserSteps(browser, join(tmpdir(), 'atmos-keys-shots-'))
})

after(async () => {
  console.log(`screenshots: ${steps?.dir}`)
  await browser?.close()
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

/** A page signed in as `did`, its console errors kept. */
const signedIn = async (did: string): Promise<Page> =>
  steps.newPage(await signedInContext(browser, { db, adminUrl: base, did }))

/** No axe violation, no sideways scrolling; a screenshot kept for people. */
const clean = (page: Page, name: string) => steps.check(page, name)

describe('key pages in a browser', () => {
  it('issue an API key and rotate DKIM keys through forms, axe-clean, without console errors', async () => {
    const did = `did:plc:${'keyse2e'.padEnd(24, 'z')}`
    await addMember(db.$client, loadKeyring(join(dir, 'relay-kek')), { did, domain: 'browser.example' })
    const page = await signedIn(did)
    const questions: string[] = []
    page.on('dialog', (d) => {
      questions.push(d.message())
      void d.accept()
    })

    await page.goto(`${base}/account/domains/browser.example/api-key`)
    await clean(page, 'api-key')
    await page.getByRole('button', { name: 'Issue an API key' }).click()
    await page.waitForURL(`${base}/account/domains/browser.example/api-key`)
    const key = await page.getByTestId('api-key').textContent()
    assert.match(key ?? '', /^atmos_[0-9a-f]{16}_/)
    await clean(page, 'api-key-issued')
    await page.getByRole('link', { name: 'Done' }).click()
    await page.getByRole('button', { name: 'Replace the API key' }).click()
    await page.getByTestId('api-key').waitFor()
    assert.match(questions[0] ?? '', /Replace the API key of browser\.example\?/)
    assert.notEqual(await page.getByTestId('api-key').textContent(), key)

    await page.goto(`${base}/account/domains/browser.example/keys`)
    await clean(page, 'keys')
    await page.getByRole('button', { name: 'Start a key rotation' }).click()
    await page.getByRole('heading', { name: /Rotation under way/ }).waitFor()
    assert.match(await page.content(), /atmos2r\._domainkey\.browser\.example\. IN TXT/)
    await clean(page, 'keys-rotating')
    await page.getByRole('button', { name: 'Cancel the rotation' }).click()
    await page.getByRole('button', { name: 'Start a key rotation' }).waitFor()
    assert.match(questions[1] ?? '', /Cancel the key rotation of browser\.example\?/)
    assert.deepEqual(steps.errorsSoFar(), [])
  })
})
