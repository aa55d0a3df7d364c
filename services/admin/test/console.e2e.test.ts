import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db } from '@atmos/db'
import { addMember } from '@atmos/enrolment'
import { suppress } from '@atmos/reputation'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, loadKeyring } from '@atmos/secrets'
import {
  closedPort,
  createTestDatabase,
  deletePrefix,
  type TestDatabase,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import type { Browser, Page } from '@atmos/testkit/browser'
import { launchBrowser } from '@atmos/testkit/browser'
import { sql } from 'drizzle-orm'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'
import { BrowserSteps, signedInContext } from './browser-harness.ts'

// The operator console in a real browser (Debian's chromium): an operator, signed in by a
// session row (signin.e2e.test.ts covers the atproto sign-in), finds a member past the
// complaint threshold, suspends it with a reason, reinstates it, lifts a complaint
// suppression and reads all of it in the audit log; a member who is not an operator gets 403.
// Every page: no console error, no axe violation, no sideways scrolling.

const OPERATOR = 'did:plc:eeoperatoreeoperatoreeop'
const BAD = 'did:plc:eebadsendereebadsendere'
const prefix = testRedisPrefix('console-e2e')

let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
let browser: Browser
let steps: BrowserSteps
let redis: ReturnType<typeof testRedis>

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const dir = mkdtempSync(join(tmpdir(), 'atmos-console-e2e-'))
  createKeyringFile(join(dir, 'kek'))
  createKeyringFile(join(dir, 'relay-kek'))
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_REDIS_PREFIX: prefix,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: join(dir, 'kek'),
      ATMOS_ADMIN_ENROLL_KEK_FILE: join(dir, 'relay-kek'),
      ATMOS_ADMIN_OPERATORS: OPERATOR,
      ATMOS_ADMIN_LABELER_URL: `http://127.0.0.1:${await closedPort()}`,
      ATMOS_ADMIN_OAUTH_PLC_URL: `http://127.0.0.1:${await closedPort()}`,
    },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', process.env.ATMOS_TEST_LOG ?? 'silent') })
  await service.start()
  await service.whenStarted()
  base = service.webUrl!

  // A member past the complaint threshold: 150 recipients delivered (through Gmail's MX), 4 complaints.
  const m = await addMember(db.$client, loadKeyring(join(dir, 'relay-kek')), {
    did: BAD,
    domain: 'e2e-bad.example',
    maxDomains: 2,
    actor: 'operator:test',
  })
  await db.execute(sql`update members set status = 'active', activated_at = now() where id = ${m.id}`)
  await db.execute(sql`
    insert into messages (id, member_id, domain_id, envelope_from, return_path, message_id_header, size, body,
                          expires_at, received_at, state)
    select gen_random_uuid(), ${m.id}, ${m.domainId}, 'news@e2e-bad.example', 'b+x@pool.example',
           '<n' || g || '@e2e-bad.example>', 3, '\\x616263'::bytea, now() + interval '3 days',
           now() - (g || ' minutes')::interval, 'done'
    from generate_series(1, 150) g`)
  await db.execute(sql`
    insert into message_recipients (message_id, address, domain, state, attempts, last_reply)
    select id, 'reader@gmail.example', 'gmail.example', 'delivered', 1, '250 2.0.0 ok'
    from messages where member_id = ${m.id}`)
  await db.execute(sql`
    insert into delivery_attempts (recipient_id, message_id, mx_host, reply_code, outcome)
    select r.id, r.message_id, 'gmail-smtp-in.l.google.com', 250, 'delivered'
    from message_recipients r join messages m on m.id = r.message_id where m.member_id = ${m.id}`)
  await db.execute(sql`
    insert into feedback_events (type, member_id, message_id, recipient, source)
    select 'complaint', ${m.id}, id, 'reader@gmail.example', 'arf'
    from messages where member_id = ${m.id} limit 4`)
  await suppress(db, { memberId: m.id, address: 'angry@gmail.example', reason: 'complaint' })
  redis = testRedis()
  browser = await launchBrowser()
  steps = new BrowserSteps(browser, 'atmos-console-shots-')
})

after(async () => {
  console.log(`screenshots: ${steps?.dir}`)
  await browser?.close()
  await service?.destroy()
  if (redis) {
    await deletePrefix(redis, prefix)
    redis.disconnect()
  }
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

const signedInPage = async (as: string): Promise<Page> =>
  steps.newPage(await signedInContext(browser, { db, adminUrl: base, did: as }))

const statusOf = async () =>
  (await db.execute<{ status: string }>(sql`select status from members where did = ${BAD}`))[0]!.status

describe('the operator console in a real browser', () => {
  it('shows the pool over each window with its charts', async () => {
    const page = await signedInPage(OPERATOR)
    for (const w of ['24h', '7d', '30d']) {
      assert.equal((await page.goto(`${base}/operator?window=${w}`))?.status(), 200)
      assert.equal(await page.locator('svg.chart rect[height]').first().isVisible(), true, `bars over ${w}`)
      await steps.check(page, `pool-${w}`)
    }
    assert.match((await page.locator('main').textContent()) ?? '', /deliver-message/)
    await page.close()
  })

  it('finds the member past the threshold, suspends and reinstates it, lifts a complaint, reads the audit log', async () => {
    const page = await signedInPage(OPERATOR)
    await page.goto(`${base}/operator/members`)
    await page.getByLabel('DID, handle or domain').fill('e2e-bad')
    await page.getByRole('button', { name: 'Search' }).click()
    await page.waitForURL((u) => u.searchParams.get('q') === 'e2e-bad')
    const row = page.getByRole('row').filter({ hasText: BAD })
    assert.match((await row.textContent()) ?? '', /suspend$/, 'the level column says suspend')
    await steps.check(page, 'members')

    await row.getByRole('link').click()
    await page.waitForURL((u) => u.pathname === `/operator/members/${encodeURIComponent(BAD)}`)
    await steps.check(page, 'member')

    await page.getByRole('link', { name: 'Suspend this member' }).click()
    await page.getByLabel(/^Reason/).waitFor()
    await steps.check(page, 'suspend-confirm')
    await page.getByLabel(/^Reason/).fill('complaint rate past 0.3 % over 24h')
    await page.getByRole('button', { name: 'Suspend this member' }).click()
    await page.waitForURL((u) => u.search === '?done=suspended')
    assert.equal(await statusOf(), 'suspended')
    assert.match((await page.getByRole('status').textContent()) ?? '', /suspended/)
    await steps.check(page, 'member-suspended')

    await page.getByRole('link', { name: 'Reinstate this member' }).click()
    await page.getByLabel(/^Reason/).fill('list cleaned, checked with the member')
    await page.getByRole('button', { name: 'Reinstate this member' }).click()
    await page.waitForURL((u) => u.search === '?done=active')
    assert.equal(await statusOf(), 'active')

    await page.getByRole('link', { name: 'Lift angry@gmail.example' }).click()
    await page.getByLabel(/^Reason/).waitFor()
    await steps.check(page, 'lift-confirm')
    await page.getByLabel(/^Reason/).fill('the recipient wrote to ask for the newsletter again')
    await page.getByRole('button', { name: 'Lift the suppression' }).click()
    await page.waitForURL((u) => u.search === '?done=lifted')
    assert.equal(await page.getByRole('link', { name: 'Lift angry@gmail.example' }).count(), 0)

    await page.getByRole('link', { name: 'Message log' }).click()
    await page.waitForURL((u) => u.pathname.endsWith('/messages'))
    await steps.check(page, 'member-messages')

    await page.goto(`${base}/operator/audit`)
    await page.getByLabel('Member DID').fill(BAD)
    await page.getByRole('button', { name: 'Filter' }).click()
    await page.waitForURL((u) => u.searchParams.get('did') === BAD)
    const log = (await page.locator('main table').textContent()) ?? ''
    assert.match(log, /member\.suspended.*complaint rate past 0\.3 % over 24h/s)
    assert.match(log, /member\.reinstated.*list cleaned/s)
    assert.match(log, /suppression\.lifted.*ask for the newsletter again/s)
    await steps.check(page, 'audit')
    await page.getByLabel('Action (e.g. member.suspended)').fill('suppression.lifted')
    await page.getByRole('button', { name: 'Filter' }).click()
    await page.waitForURL((u) => u.searchParams.get('action') === 'suppression.lifted')
    assert.doesNotMatch((await page.locator('main table').textContent()) ?? '', /member\.suspended/)
    await page.close()
  })

  it('gives a member who is not an operator a 403 page, which passes axe too', async () => {
    const page = await signedInPage(BAD)
    const res = await page.goto(`${base}/operator`)
    assert.equal(res?.status(), 403)
    await steps.check(page, 'not-operator')
    assert.equal((await page.goto(`${base}/operator/audit`))?.status(), 403)
    await page.close()
  })

  it('logged no console error on any page', () => {
    assert.deepEqual(steps.errorsSoFar(), [])
  })
})
