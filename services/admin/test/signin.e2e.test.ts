import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { auditLog, createDb, type Db, members, webSessions } from '@atmos/db'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile } from '@atmos/secrets'
import { closedPort, createTestDatabase, type TestDatabase } from '@atmos/testkit'
import type { Browser, Page } from '@atmos/testkit/browser'
import { launchBrowser } from '@atmos/testkit/browser'
import { AtpAgent } from '@atproto/api'
import { TestNetworkNoAppView } from '@atproto/dev-env'
import { eq } from 'drizzle-orm'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'
import { BrowserSteps, SIGNIN_FIELD, signInThroughPds } from './browser-harness.ts'

// Signing in with atproto in a real browser (Debian's chromium) on a real local PDS's own
// sign-in and consent pages, then our session: the account page, sign-out, sign-out
// everywhere, CSRF, the operator area. Every page is checked for console errors and by axe.

const PASSWORD = 'correct horse battery'
/** Under the OS's temporary directory, taken before the PDS's is set as TMPDIR. */
const SHOTS_PREFIX = join(tmpdir(), 'atmos-admin-shots-')

let network: TestNetworkNoAppView
let tdb: TestDatabase
let db: Db
let service: AdminService
let env: Record<string, string>
let base: string
let browser: Browser
let steps: BrowserSteps
let alice: string
let olga: string

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
  // A fixed port: the loopback client's id names its redirect, so a restarted admin must
  // come back on the same one.
  const port = await closedPort()
  env = {
    ATMOS_DATABASE_URL: tdb.url,
    ATMOS_HTTP_PORT: '0',
    ATMOS_ADMIN_WEB_PORT: String(port),
    ATMOS_ADMIN_KEK_FILE: join(dir, 'kek'),
    ATMOS_ADMIN_OPERATORS: olga,
    ATMOS_ADMIN_OAUTH_PLC_URL: network.plc.url,
    ATMOS_ADMIN_OAUTH_HANDLE_RESOLVER: network.pds.url,
    ATMOS_ADMIN_OAUTH_ALLOW_HTTP: 'true',
    // Every browser here signs in from 127.0.0.1, more often than a person would (web.test.ts tests the limit).
    ATMOS_ADMIN_SIGNIN_PER_MINUTE: '1000',
  }
  service = await startAdmin()
  base = service.webUrl!
  browser = await launchBrowser()
  steps = new BrowserSteps(browser, SHOTS_PREFIX)
})

after(async () => {
  console.log(`screenshots: ${steps?.dir}`)
  await browser?.close()
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
  await network?.close()
})

async function startAdmin(): Promise<AdminService> {
  const s = new AdminService(createContext(loadConfig(adminConfigSchema, { env })))
  Object.assign(s.ctx, { logger: createLogger('admin', process.env.ATMOS_TEST_LOG ?? 'silent') })
  await s.start()
  await s.whenStarted()
  return s
}

/** A page of ours: no console error, no axe violation, and a screenshot kept for people. */
const checkPage = (page: Page, name: string) => steps.check(page, name)
const newPage = () => steps.newPage()

/** Sign in on our page, then the PDS's own sign-in and consent pages; `consent` false denies. */
const signIn = (page: Page, handle: string, consent = true) =>
  signInThroughPds(page, { adminUrl: base, pdsUrl: network.pds.url, handle, password: PASSWORD, consent, steps })

/** The page's CSRF token, read from a form as a script of the member's could. */
const csrfOf = (page: Page) => page.locator('input[name=_csrf]').first().inputValue()

describe('sign in with atproto in a real browser', () => {
  it('signs in on the PDS’s own pages and lands on the account page, signed in; an audit row says from where', async () => {
    const page = await newPage()
    await page.goto(`${base}/`)
    await checkPage(page, 'signin')
    await signIn(page, 'alice.test')
    assert.equal(new URL(page.url()).pathname, '/account')
    assert.equal(await page.getByTestId('did').textContent(), alice)
    assert.equal(await page.getByTestId('handle').textContent(), 'alice.test')
    await checkPage(page, 'account')
    const cookie = (await page.context().cookies()).find((c) => c.name === 'atmos_session')
    assert.ok(cookie, 'the session cookie is set')
    assert.equal(cookie.httpOnly, true)
    assert.equal(cookie.sameSite, 'Lax')
    const [audit] = await db.select().from(auditLog).where(eq(auditLog.action, 'web.signin'))
    assert.equal(audit?.actor, `admin:${alice}`)
    assert.deepEqual(audit?.detail, { ip: '127.0.0.1' })
    // Signed in, the sign-in page sends the member to its account.
    await page.goto(`${base}/`)
    assert.equal(new URL(page.url()).pathname, '/account')
    await page.context().close()
  })

  it('shows a page the member can act on when consent is denied', async () => {
    const page = await newPage()
    await signIn(page, 'alice.test', false)
    assert.equal(new URL(page.url()).pathname, '/oauth/callback')
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign-in cancelled')
    await checkPage(page, 'consent-denied')
    assert.equal(
      (await page.context().cookies()).find((c) => c.name === 'atmos_session'),
      undefined,
    )
    await page.context().close()
  })

  it('names an unknown handle on the sign-in page itself, with status 400', async () => {
    const page = await newPage()
    await page.goto(`${base}/`)
    await page.getByLabel(SIGNIN_FIELD).fill('nobody.test')
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${base}/signin`),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ])
    assert.equal(res.status(), 400)
    assert.match((await page.getByRole('alert').textContent()) ?? '', /could not find the account nobody\.test/)
    await checkPage(page, 'unknown-handle')
    await page.context().close()
  })

  it('says so when the PDS named does not answer (502 page)', async () => {
    const page = await newPage()
    await page.goto(`${base}/`)
    await page.getByLabel(SIGNIN_FIELD).fill(`http://127.0.0.1:${await closedPort()}`)
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${base}/signin`),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ])
    assert.equal(res.status(), 502)
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Your PDS did not answer')
    await checkPage(page, 'pds-unreachable')
    await page.context().close()
  })

  it('an expired or replayed callback is a page saying to start again', async () => {
    const page = await newPage()
    const res = await page.goto(`${base}/oauth/callback?state=forged&code=x&iss=${encodeURIComponent(network.pds.url)}`)
    assert.equal(res?.status(), 400)
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign-in expired')
    await checkPage(page, 'callback-expired')
    await page.context().close()
  })

  it('signs out; sign out everywhere revokes the session of another browser too', async () => {
    const one = await newPage()
    await signIn(one, 'alice.test')
    const two = await newPage()
    await signIn(two, 'alice.test')
    assert.equal(new URL(two.url()).pathname, '/account')

    // Sign out in the first: only its own session ends.
    await one.getByRole('button', { name: 'Sign out', exact: true }).click()
    await one.waitForURL(`${base}/`)
    await one.goto(`${base}/account`)
    assert.equal(new URL(one.url()).pathname, '/', 'signed out, the account page sends to sign-in')
    await two.reload()
    assert.equal(new URL(two.url()).pathname, '/account', 'the other browser is still signed in')

    // Sign in again in the first, then sign out everywhere from it: the second browser is out.
    const sessionCookie = async (p: Page) =>
      (await p.context().cookies()).find((c) => c.name === 'atmos_session')?.value
    const before = await sessionCookie(two)
    await signIn(one, 'alice.test')
    const again = await sessionCookie(one)
    assert.ok(again && before && again !== before, 'every sign-in gets a new session id')
    one.once('dialog', (d) => d.accept())
    await one.getByRole('button', { name: 'Sign out everywhere' }).click()
    await one.waitForURL(`${base}/`)
    await two.reload()
    assert.equal(new URL(two.url()).pathname, '/', 'the second browser was signed out')
    const live = await db.select().from(webSessions).where(eq(webSessions.did, alice))
    assert.ok(live.length >= 3)
    assert.ok(
      live.every((s) => s.revokedAt),
      'every session of the DID is revoked',
    )
    const actions = (await db.select().from(auditLog).where(eq(auditLog.did, alice))).map((a) => a.action)
    assert.ok(actions.includes('web.signout'))
    assert.ok(actions.includes('web.signout_everywhere'))
    await one.context().close()
    await two.context().close()
  })

  it('refuses a state-changing request without the CSRF token or from another origin (403 with the reason)', async () => {
    const page = await newPage()
    await signIn(page, 'alice.test')
    const token = await csrfOf(page)
    const noToken = await page.request.post(`${base}/signout`, { form: {}, maxRedirects: 0 })
    assert.equal(noToken.status(), 403)
    assert.match(await noToken.text(), /form token is missing/)
    const otherSite = await page.request.post(`${base}/signout`, {
      form: { _csrf: token },
      headers: { origin: 'https://evil.example' },
      maxRedirects: 0,
    })
    assert.equal(otherSite.status(), 403)
    assert.match(await otherSite.text(), /another site/)
    const wrong = await page.request.post(`${base}/signout`, { form: { _csrf: `${token.slice(1)}x` }, maxRedirects: 0 })
    assert.equal(wrong.status(), 403)
    await page.reload()
    assert.equal(new URL(page.url()).pathname, '/account', 'still signed in: none of them went through')

    // The member API with the session: mutations want the token in a header.
    const notMember = await page.request.get(`${base}/api/member`)
    assert.equal(notMember.status(), 403, 'a DID that has not enrolled is no member')
    await db.insert(members).values({ did: alice, status: 'active', activatedAt: new Date() })
    const me = await page.request.get(`${base}/api/member`)
    assert.equal(me.status(), 200)
    assert.deepEqual(((await me.json()) as { member: string; credential: unknown }).credential, null)
    const del = (headers: Record<string, string>) =>
      page.request.delete(`${base}/api/member/suppressions/${encodeURIComponent('x@r.example')}`, { headers })
    const refused = await del({})
    assert.equal(refused.status(), 403)
    assert.match(((await refused.json()) as { message: string }).message, /^CSRF check failed/)
    assert.equal((await del({ 'x-csrf-token': token })).status(), 404, 'past CSRF: not on the list')
    await page.context().close()
  })

  it('keeps /operator to operators: sign-in when signed out, 403 to a member, the page to an operator', async () => {
    const page = await newPage()
    await page.goto(`${base}/operator`)
    assert.equal(new URL(page.url()).pathname, '/')
    await signIn(page, 'alice.test')
    const res = await page.goto(`${base}/operator`)
    assert.equal(res?.status(), 403)
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Operators only')
    await checkPage(page, 'operator-forbidden')
    assert.equal((await page.request.get(`${base}/api/operator/inbound`)).status(), 403)
    await page.context().close()

    const op = await newPage()
    await signIn(op, 'olga.test')
    const ok = await op.goto(`${base}/operator`)
    assert.equal(ok?.status(), 200)
    await checkPage(op, 'operator')
    assert.equal((await op.request.get(`${base}/api/operator/inbound`)).status(), 200)
    await op.context().close()
  })

  it('finishes a sign-in begun before the admin restarted (state sealed in Postgres, not in memory)', async () => {
    const page = await newPage()
    await page.goto(`${base}/`)
    await page.getByLabel(SIGNIN_FIELD).fill('alice.test')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.waitForURL((u) => u.origin === new URL(network.pds.url).origin)
    await page.locator('input[name=password]').fill(PASSWORD)
    await page.locator('button[type=submit]').click()
    const authorize = page.getByRole('button', { name: 'Authorize' })
    await authorize.waitFor()
    // On the consent page: the admin goes away and a new process takes its place.
    await service.destroy()
    service = await startAdmin()
    assert.equal(service.webUrl, base)
    await authorize.click()
    await page.waitForURL(`${base}/account`)
    assert.equal(await page.getByTestId('did').textContent(), alice)
    await page.context().close()
  })

  it('logged no console error on any page', () => {
    assert.deepEqual(steps.consoleErrors, [])
  })
})
