import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db, webSessions } from '@atmos/db'
import { addMember } from '@atmos/enrolment'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, loadKeyring } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { axeCheck, type Browser, collectConsoleErrors, launchBrowser, type Page } from '@atmos/testkit/browser'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'

// The key pages in a real browser against a real admin (its CSP, static files, session and
// CSRF layers): no console error, no axe violation, the confirm dialogs, the forms' tokens.
// (The switch itself writes to a PDS: keys.test.ts covers it with a stand-in.)

let tdb: TestDatabase
let db: Db
let service: AdminService
let browser: Browser
let base: string
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
})

after(async () => {
  await browser?.close()
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

async function signedIn(did: string): Promise<{ page: Page; errors: string[] }> {
  const id = randomBytes(32).toString('base64url')
  await db.insert(webSessions).values({
    idHash: createHash('sha256').update(id).digest('base64url'),
    did,
    expiresAt: new Date(Date.now() + 3_600_000),
  })
  const context = await browser.newContext()
  await context.addCookies([{ name: 'atmos_session', value: id, url: base, httpOnly: true, sameSite: 'Lax' }])
  const page = await context.newPage()
  const errors = collectConsoleErrors(page)
  return { page, errors }
}

async function clean(page: Page, name: string) {
  assert.deepEqual(await axeCheck(page), [], `axe on ${name}`)
}

describe('key pages in a browser', () => {
  it('issue an API key and rotate DKIM keys through forms, axe-clean, without console errors', async () => {
    const did = `did:plc:${'keyse2e'.padEnd(24, 'z')}`
    await addMember(db.$client, loadKeyring(join(dir, 'relay-kek')), { did, domain: 'browser.example' })
    const { page, errors } = await signedIn(did)
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
    assert.deepEqual(errors, [])
  })
})
