import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db, domains, members, messages, webSessions } from '@atmos/db'
import { unsubscribeToken } from '@atmos/mail-feedback'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, createSecretFile, type Keyring, loadKeyring } from '@atmos/secrets'
import { closedPort, createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { parseSecret, unsealSecret } from '@atmos/webhook-events'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'
import { csrfTokenFor } from '../src/web/session.ts'

// The account's webhook pages over HTTP against a real admin and Postgres: adding an endpoint
// (URL rules, the secret shown once and sealed at rest), CSRF, ownership (another member's
// endpoint is a 404 and stays as it was), the test button, rotation, the disabled state and
// re-enabling; and a one-click unsubscribe POST writing recipient.unsubscribed in the outbox.

let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
let keyring: Keyring
const tokenSecret = randomBytes(32).toString('hex')

type Member = { id: number; did: string }
type Session = { cookie: string; csrf: string }

async function member(tag: string): Promise<Member> {
  const did = `did:plc:${tag.padEnd(24, 'a')}`
  const [m] = await db
    .insert(members)
    .values({ did, status: 'active', activatedAt: new Date() })
    .returning({ id: members.id })
  return { id: m!.id, did }
}

async function session(did: string): Promise<Session> {
  const id = randomBytes(32).toString('base64url')
  await db.insert(webSessions).values({
    idHash: createHash('sha256').update(id).digest('base64url'),
    did,
    expiresAt: new Date(Date.now() + 3_600_000),
  })
  return { cookie: `atmos_session=${id}`, csrf: csrfTokenFor(id) }
}

const get = (s: Session, path: string) => fetch(`${base}${path}`, { headers: { cookie: s.cookie }, redirect: 'manual' })

function post(s: Session, path: string, fields: Array<[string, string]>, opts: { csrf?: boolean } = {}) {
  const body = new URLSearchParams(opts.csrf === false ? fields : [['_csrf', s.csrf], ...fields])
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { cookie: s.cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body,
    redirect: 'manual',
  })
}

const endpointForm = (url: string, events = ['message.delivered', 'message.bounced']): Array<[string, string]> => [
  ['url', url],
  ['description', 'billing'],
  ...events.map((e): [string, string] => ['events', e]),
]

async function endpointsOf(memberId: number) {
  return db.$client<
    {
      id: string
      url: string
      events: string[]
      kek_id: string
      secret_sealed: Buffer
      previous_secret_sealed: Buffer | null
      disabled_at: unknown
    }[]
  >`select id::text, url, events, kek_id, secret_sealed, previous_secret_sealed, disabled_at
    from webhook_endpoints where member_id = ${memberId} order by id`
}

async function addVia(s: Session, url: string): Promise<{ id: number; secret: string }> {
  const res = await post(s, '/account/webhooks', endpointForm(url))
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const page = await res.text()
  const secret = /data-testid="webhook-secret">(whsec_[A-Za-z0-9+/=]+)</.exec(page)?.[1]
  const id = /href="\/account\/webhooks\/(\d+)"/.exec(page)?.[1]
  assert.ok(secret && id, 'the secret and the endpoint link are on the page')
  return { id: Number(id), secret }
}

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const dir = mkdtempSync(join(tmpdir(), 'atmos-webhooks-admin-'))
  createKeyringFile(join(dir, 'kek'))
  createKeyringFile(join(dir, 'webhooks-kek'))
  keyring = loadKeyring(join(dir, 'webhooks-kek'))
  createSecretFile(join(dir, 'token.secret'), tokenSecret)
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: join(dir, 'kek'),
      ATMOS_ADMIN_WEBHOOKS_KEK_FILE: join(dir, 'webhooks-kek'),
      ATMOS_ADMIN_TOKEN_SECRET_FILE: join(dir, 'token.secret'),
      ATMOS_ADMIN_LABELER_URL: '',
      ATMOS_ADMIN_OAUTH_PLC_URL: `http://127.0.0.1:${await closedPort()}`,
    },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', 'silent') })
  await service.start()
  await service.whenStarted()
  base = service.webUrl!
})

after(async () => {
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

describe('/account/webhooks', () => {
  let a: Member
  let b: Member
  let sa: Session
  let sb: Session
  before(async () => {
    a = await member('hooka')
    b = await member('hookb')
    sa = await session(a.did)
    sb = await session(b.did)
  })

  it('refuses a POST without the form token, and adds nothing', async () => {
    const res = await post(sa, '/account/webhooks', endpointForm('https://hooks.example.net/a'), { csrf: false })
    assert.equal(res.status, 403)
    assert.equal((await endpointsOf(a.id)).length, 0)
  })

  it('refuses URLs that are not https, carry credentials, or name a private host, saying why', async () => {
    for (const [url, why] of [
      ['http://hooks.example.net/a', /must start with https/],
      ['https://user:pw@hooks.example.net/a', /user name and password/],
      ['https://127.0.0.1/a', /not a public address/],
      ['https://[::1]/a', /not a public address/],
      ['https://169.254.169.254/latest', /not a public address/],
      ['https://localhost/a', /public host name/],
      [`https://hooks.example.net/${'x'.repeat(2100)}`, /at most 2048/],
      ['not a url', /full URL/],
    ] as const) {
      const res = await post(sa, '/account/webhooks', endpointForm(url))
      assert.equal(res.status, 400, url)
      assert.match(await res.text(), why, url)
    }
    const none = await post(sa, '/account/webhooks', endpointForm('https://hooks.example.net/a', []))
    assert.equal(none.status, 400)
    assert.match(await none.text(), /at least one event type/)
    const odd = await post(sa, '/account/webhooks', endpointForm('https://hooks.example.net/a', ['message.read']))
    assert.equal(odd.status, 400)
    assert.equal((await endpointsOf(a.id)).length, 0)
  })

  it('adds an endpoint, shows its secret once and keeps it sealed at rest', async () => {
    const { id, secret } = await addVia(sa, 'https://hooks.example.net/a')
    const [row] = await endpointsOf(a.id)
    assert.equal(Number(row!.id), id)
    assert.deepEqual(row!.events, ['message.delivered', 'message.bounced'])
    assert.ok(!row!.secret_sealed.includes(parseSecret(secret)), 'not stored in clear')
    assert.deepEqual(unsealSecret(keyring, a.id, row!.kek_id, row!.secret_sealed), parseSecret(secret))
    // Not on any page after this one.
    const page = await (await get(sa, `/account/webhooks/${id}`)).text()
    assert.ok(!page.includes(secret))
    assert.match(page, /hooks\.example\.net\/a/)
    assert.match(await (await get(sa, '/account/webhooks')).text(), /hooks\.example\.net\/a/)
  })

  it("answers 404 for another member's endpoint on every route, and changes nothing", async () => {
    const [row] = await endpointsOf(a.id)
    const id = row!.id
    assert.equal((await get(sb, `/account/webhooks/${id}`)).status, 404)
    for (const path of ['', '/test', '/rotate', '/enable', '/delete']) {
      const res = await post(sb, `/account/webhooks/${id}${path}`, endpointForm('https://evil.example.net/'))
      assert.equal(res.status, 404, path)
    }
    const [after] = await endpointsOf(a.id)
    assert.equal(after!.url, 'https://hooks.example.net/a')
    assert.deepEqual(after!.secret_sealed, row!.secret_sealed)
    const [n] = await db.$client<
      { n: number }[]
    >`select count(*)::int as n from webhook_events where member_id = ${a.id}`
    assert.equal(n!.n, 0)
    // B's own list does not show A's endpoint.
    assert.doesNotMatch(await (await get(sb, '/account/webhooks')).text(), /hooks\.example\.net/)
    // Not numbers, and ids of no one's, are the same 404.
    assert.equal((await get(sa, '/account/webhooks/abc')).status, 404)
    assert.equal((await get(sa, '/account/webhooks/999999')).status, 404)
  })

  it('"Send a test event" writes a test event for that endpoint only, shown in its deliveries', async () => {
    const other = await addVia(sa, 'https://hooks.example.net/other')
    const [first] = await endpointsOf(a.id)
    const res = await post(sa, `/account/webhooks/${first!.id}/test`, [])
    assert.equal(res.status, 303)
    const rows = await db.$client<{ type: string; endpoint_id: string }[]>`
      select e.type, d.endpoint_id::text from webhook_events e join webhook_deliveries d on d.event_id = e.id
      where e.member_id = ${a.id}`
    assert.deepEqual(
      rows.map((r) => [r.type, r.endpoint_id]),
      [['test', first!.id]],
    )
    assert.notEqual(String(other.id), first!.id)
    const page = await (await get(sa, `/account/webhooks/${first!.id}?done=test`)).text()
    assert.match(page, /<code>test<\/code>/)
    assert.match(page, /pending, next attempt/)
  })

  it('edits the URL and events, refusing a bad URL with the reason', async () => {
    const [row] = await endpointsOf(a.id)
    const bad = await post(sa, `/account/webhooks/${row!.id}`, endpointForm('http://hooks.example.net/b'))
    assert.equal(bad.status, 400)
    const ok = await post(
      sa,
      `/account/webhooks/${row!.id}`,
      endpointForm('https://hooks.example.net/b', ['label.changed', 'member.suspended']),
    )
    assert.equal(ok.status, 303)
    const [after] = await endpointsOf(a.id)
    assert.equal(after!.url, 'https://hooks.example.net/b')
    assert.deepEqual(after!.events, ['member.suspended', 'label.changed'])
  })

  it('rotates the secret: a new one shown once, the previous one kept to sign beside it', async () => {
    const [row] = await endpointsOf(a.id)
    const res = await post(sa, `/account/webhooks/${row!.id}/rotate`, [])
    assert.equal(res.status, 200)
    const fresh = /data-testid="webhook-secret">(whsec_[A-Za-z0-9+/=]+)</.exec(await res.text())?.[1]
    assert.ok(fresh)
    const [after] = await endpointsOf(a.id)
    assert.deepEqual(unsealSecret(keyring, a.id, after!.kek_id, after!.secret_sealed), parseSecret(fresh))
    assert.deepEqual(after!.previous_secret_sealed, row!.secret_sealed)
  })

  it('shows a disabled endpoint with its reason, on the account too, and enables it again', async () => {
    const [row] = await endpointsOf(a.id)
    await db.$client`
      update webhook_endpoints set disabled_at = now(), disabled_reason = 'disabled after 5 events in a row failed every attempt (last: HTTP 500)',
             consecutive_failures = 5
      where id = ${row!.id}`
    assert.match(await (await get(sa, `/account/webhooks/${row!.id}`)).text(), /disabled since .*HTTP 500/)
    assert.match(await (await get(sa, '/account/webhooks')).text(), /disabled after failing deliveries/)
    assert.match(await (await get(sa, '/account')).text(), /data-testid="webhooks-disabled"/)
    const test = await post(sa, `/account/webhooks/${row!.id}/test`, [])
    assert.equal(test.status, 409)
    assert.equal((await post(sa, `/account/webhooks/${row!.id}/enable`, [])).status, 303)
    const [after] = await endpointsOf(a.id)
    assert.equal(after!.disabled_at, null)
  })

  it('answers 429 with Retry-After past ten test events a minute', async () => {
    const [row] = await endpointsOf(a.id)
    let last: Response | undefined
    for (let i = 0; i < 12; i++) last = await post(sa, `/account/webhooks/${row!.id}/test`, [])
    assert.equal(last!.status, 429)
    assert.ok(Number(last!.headers.get('retry-after')) > 0)
  })

  it('deletes an endpoint', async () => {
    const rows = await endpointsOf(a.id)
    const res = await post(sa, `/account/webhooks/${rows[1]!.id}/delete`, [])
    assert.equal(res.status, 303)
    assert.equal((await endpointsOf(a.id)).length, rows.length - 1)
  })
})

describe('recipient.unsubscribed from a one-click POST', () => {
  it('writes the event for the member whose mail was unsubscribed from', async () => {
    const m = await member('hookunsub')
    const [d] = await db
      .insert(domains)
      .values({ memberId: m.id, domain: 'hooknews.example', status: 'active', activatedAt: new Date() })
      .returning({ id: domains.id })
    const messageId = randomUUID()
    await db.insert(messages).values({
      id: messageId,
      memberId: m.id,
      domainId: d!.id,
      envelopeFrom: 'news@hooknews.example',
      returnPath: 'b+x@bounces.example',
      size: 1,
      body: Buffer.from('x'),
      expiresAt: new Date(Date.now() + 3_600_000),
      category: 'newsletter',
    })
    const s = await session(m.did)
    await addVia(s, 'https://hooks.example.net/unsub')
    const [ep] = await endpointsOf(m.id)
    await post(
      s,
      `/account/webhooks/${ep!.id}`,
      endpointForm('https://hooks.example.net/unsub', ['recipient.unsubscribed']),
    )
    const token = unsubscribeToken(
      { secret: tokenSecret },
      { memberId: m.id, recipient: 'Reader@Dest.example', messageId },
    )
    const res = await fetch(`${base}/u/${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://mail.provider.example' },
      body: 'List-Unsubscribe=One-Click',
    })
    assert.equal(res.status, 200)
    const rows = await db.$client<{ type: string; payload: Record<string, unknown>; endpoint_id: string }[]>`
      select e.type, e.payload, d.endpoint_id::text from webhook_events e join webhook_deliveries d on d.event_id = e.id
      where e.member_id = ${m.id}`
    assert.equal(rows.length, 1)
    assert.equal(rows[0]!.type, 'recipient.unsubscribed')
    assert.equal(rows[0]!.endpoint_id, ep!.id)
    assert.equal(rows[0]!.payload.recipient, 'reader@dest.example')
    assert.equal(rows[0]!.payload.domain, 'hooknews.example')
  })
})
