import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { type Db, webSessions } from '@atmos/db'
import type { Browser, BrowserContext, Page } from '@atmos/testkit/browser'
import { axeCheck, collectConsoleErrors } from '@atmos/testkit/browser'

// What the admin's browser tests share (services/admin/test/*.e2e.test.ts and
// e2e/test/join.e2e.test.ts): pages whose console errors are kept, axe checks with a
// numbered screenshot of each step, the atproto sign-in through a PDS's own pages, and a
// signed-in browser without a PDS for tests whose subject is a page behind the sign-in.

/** The label and button of our sign-in form. */
export const SIGNIN_FIELD = 'Handle, DID or PDS address'

/**
 * A browser session of a test: every page it opens has its console errors collected (read
 * `consoleErrors` once the pages are closed, or `errorsSoFar()` at any time), and each
 * step can be checked by axe and kept as a screenshot in `dir`.
 */
export class BrowserSteps {
  readonly browser: Browser
  readonly dir: string
  readonly consoleErrors: string[] = []
  private readonly open = new Set<string[]>()
  private shots = 0

  /** `dirPrefix`: the screenshots' directory's name, made unique; an absolute one says where, else the temp dir. */
  constructor(browser: Browser, dirPrefix: string) {
    this.browser = browser
    this.dir = mkdtempSync(isAbsolute(dirPrefix) ? dirPrefix : join(tmpdir(), dirPrefix))
  }

  async newPage(context?: BrowserContext): Promise<Page> {
    const page = await (context ?? (await this.browser.newContext())).newPage()
    const errors = collectConsoleErrors(page)
    this.open.add(errors)
    page.on('close', () => {
      this.open.delete(errors)
      this.consoleErrors.push(...errors)
    })
    return page
  }

  /** Console errors of closed pages and of those still open. */
  errorsSoFar(): string[] {
    return [...this.consoleErrors, ...[...this.open].flat()]
  }

  /** A numbered full-page screenshot, for people to look at; returns its path. */
  async shot(page: Page, name: string): Promise<string> {
    const path = join(this.dir, `${String(++this.shots).padStart(2, '0')}-${name}.png`)
    await page.screenshot({ path, fullPage: true })
    return path
  }

  /** A page of ours: no axe violation, no sideways scrolling, then its screenshot. */
  async check(page: Page, name: string): Promise<void> {
    const violations = await axeCheck(page)
    assert.deepEqual(violations, [], `axe on ${name}: ${JSON.stringify(violations, null, 2)}`)
    const width = await page.evaluate(() => {
      // biome-ignore lint/suspicious/noExplicitAny: the page's globals.
      const g = globalThis as any
      return { content: g.document.documentElement.scrollWidth as number, window: g.innerWidth as number }
    })
    assert.ok(width.content <= width.window, `${name} is ${width.content} px wide in a ${width.window} px window`)
    await this.shot(page, name)
  }
}

/**
 * Signs in on the admin at `adminUrl` with `handle`: our form, then the PDS's own sign-in
 * and consent pages (both kept as screenshots when `steps` is given), back to the admin.
 * `consent` false denies at the consent page.
 */
export async function signInThroughPds(
  page: Page,
  opts: {
    adminUrl: string
    pdsUrl: string
    handle: string
    password: string
    consent?: boolean
    steps?: BrowserSteps
    timeoutMs?: number
  },
): Promise<void> {
  const { adminUrl, handle, steps } = opts
  const consent = opts.consent ?? true
  const timeout = opts.timeoutMs ?? 15_000
  const pdsOrigin = new URL(opts.pdsUrl).origin
  await page.goto(`${adminUrl}/`)
  await page.getByLabel(SIGNIN_FIELD).fill(handle)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page
    .waitForURL((u) => u.origin === pdsOrigin, { timeout })
    .catch(async (e) => {
      const body = ((await page.locator('body').textContent()) ?? '').slice(0, 500)
      throw new Error(`not on the PDS: ${page.url()}\n${body}`, { cause: e })
    })
  // The PDS fills in (read-only) the account we named.
  const username = page.locator('input[name=username]')
  if (await username.isEditable({ timeout })) await username.fill(handle)
  else assert.equal(await username.inputValue(), handle)
  await page.locator('input[name=password]').fill(opts.password)
  if (steps) await steps.shot(page, `pds-signin-${handle}`)
  await page.locator('button[type=submit]').click()
  const button = page.getByRole('button', { name: consent ? 'Authorize' : /Deny|Reject|Cancel/ })
  await button.waitFor({ timeout })
  if (steps) await steps.shot(page, `pds-consent-${handle}`)
  await button.click()
  await page.waitForURL((u) => u.origin === new URL(adminUrl).origin, { timeout })
}

/**
 * A browser context signed in as `did` without a PDS: the session row a sign-in makes, and
 * its cookie. For tests of the pages behind the sign-in (signin.e2e.test.ts tests the sign-in).
 */
export async function signedInContext(
  browser: Browser,
  opts: { db: Db; adminUrl: string; did: string; context?: Parameters<Browser['newContext']>[0] },
): Promise<BrowserContext> {
  const id = randomBytes(32).toString('base64url')
  await opts.db.insert(webSessions).values({
    idHash: createHash('sha256').update(id).digest('base64url'),
    did: opts.did,
    expiresAt: new Date(Date.now() + 3_600_000),
  })
  const context = await browser.newContext(opts.context)
  await context.addCookies([{ name: 'atmos_session', value: id, url: opts.adminUrl, httpOnly: true, sameSite: 'Lax' }])
  return context
}

/**
 * A value the page shows under a name: a labelled field, a term of a description list, or a
 * row header of a table, whichever the page uses.
 */
export async function field(page: Page, name: string): Promise<string> {
  const input = page.getByLabel(name, { exact: true })
  if ((await input.count()) === 1) return (await input.inputValue()).trim()
  const term = page.locator('dt', { hasText: new RegExp(`^\\s*${name}\\s*$`) })
  await term
    .or(page.getByRole('rowheader', { name, exact: true }))
    .first()
    .waitFor()
  if ((await term.count()) > 0)
    return ((await term.locator('xpath=following-sibling::dd[1]').textContent()) ?? '').trim()
  const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name, exact: true }) })
  return ((await row.getByRole('cell').first().textContent()) ?? '').trim()
}
