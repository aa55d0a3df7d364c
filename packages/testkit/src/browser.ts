import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { type Browser, chromium, type Page } from 'playwright-core'

export type { Browser, BrowserContext, Page } from 'playwright-core'

// A real browser for end-to-end tests: Debian's chromium driven by playwright-core, never
// a browser downloaded at test time (the machine and CI have no route to one). Missing
// chromium is a failure saying how to install it, never a skipped test.

export const CHROMIUM_PATH = process.env.ATMOS_CHROMIUM ?? '/usr/bin/chromium'

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
]

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `no chromium at ${CHROMIUM_PATH}: apt-get install -y --no-install-recommends chromium ` +
        '(scripts/test.sh installs it), or point ATMOS_CHROMIUM at one',
    )
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: ARGS, headless: true })
}

/**
 * Console errors and uncaught page errors, collected from the moment of the call. Chromium
 * logs an error for a page served with a 4xx/5xx status too; the document's own status is
 * for the test to assert (an error page is meant to have one), so that line is left out,
 * while the same line for a subresource (a missing stylesheet, script, icon) counts.
 */
export function collectConsoleErrors(page: Page): string[] {
  const errors: string[] = []
  page.on('console', (m) => {
    if (m.type() !== 'error') return
    const documentStatus = m.text().startsWith('Failed to load resource:') && m.location().url === page.url()
    if (!documentStatus) errors.push(`${m.location().url || page.url()}: ${m.text()}`)
  })
  page.on('pageerror', (e) => errors.push(`${page.url()}: ${e.message}`))
  return errors
}

export type AxeViolation = { id: string; impact: string | null; help: string; targets: string[] }

let axeSource: string | undefined

/**
 * Runs axe-core (read from node_modules, offline) in the page and returns its violations
 * (WCAG 2 A/AA and best practice). The script is evaluated through the DevTools protocol,
 * so a page's CSP that forbids inline scripts does not stop it.
 */
export async function axeCheck(page: Page): Promise<AxeViolation[]> {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
  await page.evaluate(axeSource)
  const result = await page.evaluate(async () => {
    // biome-ignore lint/suspicious/noExplicitAny: axe and document are the page's globals.
    const g = globalThis as any
    const r = await g.axe.run(g.document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    })
    return r.violations.map(
      (v: { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        targets: v.nodes.map((n) => n.target.join(' ')),
      }),
    )
  })
  return result as AxeViolation[]
}
