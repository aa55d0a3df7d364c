import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db, domains, members, messages, suppressions } from '@atmos/db'
import { unsubscribeToken } from '@atmos/mail-feedback'
import { createLogger } from '@atmos/runtime'
import { createSecretFile } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { and, eq, isNull } from 'drizzle-orm'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'

// The public one-click unsubscribe page (RFC 8058) against a real admin and Postgres: what a
// link scanner's GET, a mail provider's POST and a forged link each do.

let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
const secret = randomBytes(32).toString('hex')
let memberId: number
let messageId: string
const recipient = 'Reader@Dest.example'

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const tokenSecretFile = join(mkdtempSync(join(tmpdir(), 'atmos-admin-unsub-')), 'token.secret')
  createSecretFile(tokenSecretFile, secret)
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_TOKEN_SECRET_FILE: tokenSecretFile,
    },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', 'silent') })
  await service.start()
  await service.whenStarted()
  base = `${service.webUrl}/u`
  const [m] = await db
    .insert(members)
    .values({ did: `did:plc:${'unsub'.padEnd(24, 'a')}`, status: 'active', activatedAt: new Date() })
    .returning({ id: members.id })
  memberId = m!.id
  const [d] = await db
    .insert(domains)
    .values({ memberId, domain: 'news.example', status: 'active', activatedAt: new Date() })
    .returning({ id: domains.id })
  messageId = randomUUID()
  await db.insert(messages).values({
    id: messageId,
    memberId,
    domainId: d!.id,
    envelopeFrom: 'news@news.example',
    returnPath: 'b+x@bounces.example',
    size: 1,
    body: Buffer.from('x'),
    expiresAt: new Date(Date.now() + 3_600_000),
    category: 'newsletter',
  })
})

after(async () => {
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

const standing = () =>
  db
    .select({ address: suppressions.address, reason: suppressions.reason, domainId: suppressions.domainId })
    .from(suppressions)
    .where(and(eq(suppressions.memberId, memberId), isNull(suppressions.removedAt)))

/** A POST as a mail provider sends it (RFC 8058 §3.2): no cookie, no Origin of ours, no CSRF token. */
const oneClick = (url: string, body = 'List-Unsubscribe=One-Click') =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://mail.provider.example' },
    body,
    redirect: 'manual',
  })

describe('one-click unsubscribe page', () => {
  const token = () => unsubscribeToken({ secret }, { memberId, recipient, messageId })

  it('GET shows a confirmation form and changes nothing, however often it is fetched', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${base}/${token()}`)
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('cache-control'), 'no-store')
      const page = await res.text()
      assert.match(page, /<form method="post" action="\/u\/[^"]+">/)
      assert.match(page, /name="List-Unsubscribe" value="One-Click"/)
      assert.match(page, /news\.example/)
      assert.match(page, /Reader@Dest\.example/)
    }
    assert.deepEqual(await standing(), [])
  })

  it('refuses a forged or altered token with 400 and a reason, suppressing nothing', async () => {
    const good = token()
    const [member, hex, rcpt, mac] = good.split('.') as [string, string, string, string]
    const victim = Buffer.from('victim@dest.example').toString('base64url')
    for (const bad of [
      unsubscribeToken({ secret: 'f'.repeat(64) }, { memberId, recipient, messageId }),
      `${member}.${hex}.${victim}.${mac}`,
      `${Number(member) + 1}.${hex}.${rcpt}.${mac}`,
      `${good.slice(0, -1)}${good.endsWith('A') ? 'B' : 'A'}`,
      'not-a-token',
    ]) {
      for (const res of [await fetch(`${base}/${bad}`), await oneClick(`${base}/${bad}`)]) {
        assert.equal(res.status, 400, bad)
        assert.match(await res.text(), /not valid/)
      }
    }
    assert.deepEqual(await standing(), [])
  })

  it('answers 410 for a genuine token of a member who is not there, for GET and POST alike', async () => {
    const gone = unsubscribeToken({ secret }, { memberId: memberId + 1000, recipient, messageId })
    const page = await fetch(`${base}/${gone}`)
    assert.equal(page.status, 410)
    assert.match(await page.text(), /no longer sends through Atmosphere Mail/)
    const res = await oneClick(`${base}/${gone}`)
    assert.equal(res.status, 410)
    assert.deepEqual(await standing(), [])
  })

  it('refuses a POST without List-Unsubscribe=One-Click', async () => {
    const res = await oneClick(`${base}/${token()}`, 'foo=bar')
    assert.equal(res.status, 400)
    assert.match(await res.text(), /List-Unsubscribe=One-Click/)
    assert.deepEqual(await standing(), [])
  })

  it('POST suppresses the recipient for that member with reason unsubscribe, idempotently', async () => {
    for (let i = 0; i < 2; i++) {
      const res = await oneClick(`${base}/${token()}`)
      assert.equal(res.status, 200)
      assert.match(await res.text(), /Unsubscribed/)
    }
    const rows = await standing()
    assert.equal(rows.length, 1)
    assert.equal(rows[0]!.address, 'reader@dest.example')
    assert.equal(rows[0]!.reason, 'unsubscribe')
    assert.notEqual(rows[0]!.domainId, null, 'the domain whose mail was unsubscribed from is kept')
  })
})
