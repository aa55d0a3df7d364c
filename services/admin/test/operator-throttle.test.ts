import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db, domains, members, throttleDecisions } from '@atmos/db'
import { createLogger } from '@atmos/runtime'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import type { ThrottleDecisionItem } from '../src/operator/throttle-decisions.ts'
import { AdminService } from '../src/service.ts'

// GET /api/operator/throttle-decisions of a real admin service against the real Postgres:
// the rows the relay's throttle rules write (services/relay/test/throttle.test.ts shows
// them written over SMTP), filtered by member, rule, mode and time, newest first, paged.

const TOKEN = randomBytes(32).toString('hex')
let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
const auth = { authorization: `Bearer ${TOKEN}` }

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 2 })
  const path = join(mkdtempSync(join(tmpdir(), 'atmos-admin-')), 'operator.token')
  writeFileSync(path, `${TOKEN}\n`, { mode: 0o600 })
  chmodSync(path, 0o600)
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_OPERATOR_TOKEN_FILE: path,
    },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', 'silent') })
  await service.start()
  await service.whenStarted()
  base = `${service.webUrl}/api/operator/throttle-decisions`
})

after(async () => {
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
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
