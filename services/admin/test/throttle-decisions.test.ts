import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db, domains, members, throttleDecisions, webSessions } from '@atmos/db'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile } from '@atmos/secrets'
import {
  closedPort,
  createTestDatabase,
  deletePrefix,
  type TestDatabase,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import type { ThrottleDecisionItem } from '../src/operator/throttle-decisions.ts'
import { AdminService } from '../src/service.ts'

// The relay's throttle decisions as a real admin service shows them from the real Postgres:
// GET /api/operator/throttle-decisions, filtered by member, rule, mode and time, newest first,
// paged; and each member's own in the account's "Throttled" list. The rows are those the
// relay's throttle rules write (services/relay/test/throttle.test.ts writes them over SMTP).

const TOKEN = randomBytes(32).toString('hex')
let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
let web: string
const auth = { authorization: `Bearer ${TOKEN}` }
const prefix = testRedisPrefix('throttle')

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 2 })
  const dir = mkdtempSync(join(tmpdir(), 'atmos-admin-'))
  const path = join(dir, 'operator.token')
  // Sign-in (and with it the account pages) is on when the admin has a KEK for its OAuth keys.
  createKeyringFile(join(dir, 'kek'))
  writeFileSync(path, `${TOKEN}\n`, { mode: 0o600 })
  chmodSync(path, 0o600)
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_REDIS_PREFIX: prefix,
      ATMOS_ADMIN_KEK_FILE: join(dir, 'kek'),
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_OPERATOR_TOKEN_FILE: path,
      // Neither labels nor handles resolve here: the account page says so at once.
      ATMOS_ADMIN_LABELER_URL: `http://127.0.0.1:${await closedPort()}`,
      ATMOS_ADMIN_OAUTH_PLC_URL: `http://127.0.0.1:${await closedPort()}`,
    },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', 'silent') })
  await service.start()
  await service.whenStarted()
  web = service.webUrl!
  base = `${web}/api/operator/throttle-decisions`
})

after(async () => {
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
  const redis = testRedis()
  await deletePrefix(redis, prefix)
  redis.disconnect()
})

async function member(did: string, domain: string) {
  const [m] = await db.insert(members).values({ did, status: 'active' }).returning({ id: members.id })
  const [d] = await db
    .insert(domains)
    .values({ memberId: m!.id, domain, status: 'active' })
    .returning({ id: domains.id })
  return { memberId: m!.id, domainId: d!.id, domain }
}

const HOUR = 3_600_000

describe('operator API: throttle decisions', () => {
  const a = 'did:plc:throttleaaaaaaaaaaaaaaaa'
  const b = 'did:plc:throttlebbbbbbbbbbbbbbbb'
  const now = Date.now()

  before(async () => {
    const ma = await member(a, 'burst.example')
    const mb = await member(b, 'spread.example')
    const spike = { window: '1h', recipients: 812, peakHour: 120, historyDays: 14, factor: 4, floor: 500, limit: 500 }
    const spray = {
      window: '1h',
      recipients: 150,
      domains: 149,
      ratio: 0.993,
      floor: 100,
      maxDomains: 400,
      maxRatio: 0.9,
    }
    await db.insert(throttleDecisions).values([
      {
        ...ma,
        at: new Date(now - 5 * HOUR),
        rule: 'spike',
        mode: 'shadow',
        action: 'would_defer',
        figures: spike,
        bucket: 1,
      },
      {
        ...ma,
        at: new Date(now - 2 * HOUR),
        rule: 'spike',
        mode: 'enforce',
        action: 'deferred',
        figures: spike,
        bucket: 2,
      },
      {
        ...mb,
        at: new Date(now - HOUR),
        rule: 'spray',
        mode: 'shadow',
        action: 'would_defer',
        figures: spray,
        bucket: 3,
      },
    ])
  })

  const get = async (query: string) => {
    const res = await fetch(`${base}${query}`, { headers: auth })
    assert.equal(res.status, 200, await res.clone().text())
    return (await res.json()) as { items: ThrottleDecisionItem[]; next?: number }
  }

  it('lists every decision newest first, with member, domain, rule, mode, action and figures', async () => {
    const { items, next } = await get('')
    assert.deepEqual(
      items.map((i) => [i.member, i.domain, i.rule, i.mode, i.action]),
      [
        [b, 'spread.example', 'spray', 'shadow', 'would_defer'],
        [a, 'burst.example', 'spike', 'enforce', 'deferred'],
        [a, 'burst.example', 'spike', 'shadow', 'would_defer'],
      ],
    )
    assert.deepEqual(items[0]?.figures, {
      window: '1h',
      recipients: 150,
      domains: 149,
      ratio: 0.993,
      floor: 100,
      maxDomains: 400,
      maxRatio: 0.9,
    })
    assert.equal(items[1]?.at, new Date(now - 2 * HOUR).toISOString())
    assert.equal(next, undefined)
  })

  it('filters by member, rule, mode and since, and pages with before', async () => {
    assert.deepEqual(
      (await get(`?member=${a}`)).items.map((i) => i.mode),
      ['enforce', 'shadow'],
    )
    assert.deepEqual(
      (await get('?rule=spray')).items.map((i) => i.member),
      [b],
    )
    assert.deepEqual(
      (await get('?mode=shadow')).items.map((i) => i.rule),
      ['spray', 'spike'],
    )
    const since = encodeURIComponent(new Date(now - 3 * HOUR).toISOString())
    assert.deepEqual(
      (await get(`?since=${since}&member=${a}`)).items.map((i) => i.mode),
      ['enforce'],
    )
    const first = await get('?limit=2')
    assert.equal(first.items.length, 2)
    assert.ok(first.next)
    assert.deepEqual(
      (await get(`?limit=2&before=${first.next}`)).items.map((i) => [i.rule, i.mode]),
      [['spike', 'shadow']],
    )
  })

  it('refuses a bad filter with 400 naming it, and anyone without the token with 401', async () => {
    for (const [query, field] of [
      ['?rule=volume', 'rule'],
      ['?mode=off', 'mode'],
      ['?member=alice', 'member'],
      ['?since=yesterday', 'since'],
      ['?limit=1000', 'limit'],
    ]) {
      const res = await fetch(`${base}${query}`, { headers: auth })
      assert.equal(res.status, 400, query)
      const body = (await res.json()) as { error: string; message: string }
      assert.equal(body.error, 'InvalidRequest')
      assert.ok(body.message.startsWith(`${field}:`), body.message)
    }
    assert.equal((await fetch(base)).status, 401)
  })
})

/** The account page as `did` sees it, signed in (a session row as a sign-in makes one). */
async function accountPage(did: string): Promise<string> {
  const id = randomBytes(32).toString('base64url')
  await db.insert(webSessions).values({
    idHash: createHash('sha256').update(id).digest('base64url'),
    did,
    expiresAt: new Date(Date.now() + 3_600_000),
  })
  const res = await fetch(`${web}/account`, { headers: { cookie: `atmos_session=${id}` }, redirect: 'manual' })
  assert.equal(res.status, 200)
  return res.text()
}

describe('account: Throttled', () => {
  it("lists the member's own decisions with their figures, and none of another member's", async () => {
    const html = await accountPage('did:plc:throttleaaaaaaaaaaaaaaaa')
    const section = html.slice(html.indexOf('<section class="throttled"'))
    const rows = section.slice(0, section.indexOf('</section>')).split('<tr>').slice(2)
    assert.equal(rows.length, 2, section)
    assert.match(rows[0]!, /burst\.example<\/td><td>spike<\/td><td>deferred<\/td>/)
    assert.match(
      rows[0]!,
      /812 recipients in an hour, over a limit of 500 \(4 × your busiest hour in 14 days, 120; at least 500\)/,
    )
    assert.match(rows[1]!, /<td>would have deferred \(on trial\)<\/td>/)
    assert.doesNotMatch(html, /spread\.example/)
  })

  it('says nothing was throttled to a member without decisions', async () => {
    await member('did:plc:throttlecccccccccccccccc', 'calm.example')
    const html = await accountPage('did:plc:throttlecccccccccccccccc')
    assert.match(html, /data-testid="throttled-none">Nothing throttled\./)
  })
})
