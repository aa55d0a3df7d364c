import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { auditLog, createDb, type Db, feedbackEvents, messageRecipients, messages, webSessions } from '@atmos/db'
import { addDomain, addMember, DomainError, removeDomain } from '@atmos/enrolment'
import { memberStatusChanged, TypedQueue } from '@atmos/queues'
import { statusJobId, suppress } from '@atmos/reputation'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, type Keyring, loadKeyring, verifyPassword } from '@atmos/secrets'
import {
  closedPort,
  createTestDatabase,
  deletePrefix,
  type TestDatabase,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { and, desc, eq, sql } from 'drizzle-orm'
import { parseForwardTo } from '../src/account/forward-to.ts'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'
import { csrfTokenFor } from '../src/web/session.ts'

// The member's account pages over HTTP against a real admin, Postgres and Redis: each page
// shows the member's own data; every /account/domains/:domain route answers 404 for another
// member's domain and changes nothing; lifting, forward-to, removal and a new SMTP password
// as the relay then sees them; the labels section with a real HTTP server standing in for
// the labeler, answering, failing and away.

const LABELER = 'did:plc:ourlabelerourlabelerourl'

let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
let keyring: Keyring
let redis: ReturnType<typeof testRedis>
let queue: TypedQueue<typeof memberStatusChanged>
const prefix = testRedisPrefix('acct')

/** The labeler stand-in: answers what `labelAnswer` says, or drops the connection (`down`). */
let labeler: Server
let labelAnswer: { status: number; body: string } | 'down' = { status: 200, body: '{"labels":[]}' }

type Member = { id: number; did: string; domain: string; username: string; password: string }

async function member(tag: string, domain: string): Promise<Member> {
  const did = `did:plc:${tag.padEnd(24, 'a')}`
  const m = await addMember(db.$client, keyring, { did, domain, maxDomains: 2, actor: 'operator:test' })
  return { id: m.id, did, domain: m.domain, username: m.username, password: m.password }
}

/** A session row for `did` and the cookie and form token that open it, as a sign-in makes them. */
async function session(did: string) {
  const id = randomBytes(32).toString('base64url')
  await db.insert(webSessions).values({
    idHash: createHash('sha256').update(id).digest('base64url'),
    did,
    expiresAt: new Date(Date.now() + 3_600_000),
  })
  return { cookie: `atmos_session=${id}`, csrf: csrfTokenFor(id) }
}

type Session = Awaited<ReturnType<typeof session>>

const get = (s: Session, path: string) => fetch(`${base}${path}`, { headers: { cookie: s.cookie }, redirect: 'manual' })

function post(s: Session, path: string, fields: Record<string, string>, opts: { csrf?: boolean } = {}) {
  const body = new URLSearchParams(opts.csrf === false ? fields : { _csrf: s.csrf, ...fields })
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { cookie: s.cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body,
    redirect: 'manual',
  })
}

async function domainRow(domain: string) {
  const [d] = await db.execute<{ forward_to: string | null; removed_at: string | null }>(
    sql`select forward_to, removed_at from domains where domain = ${domain} order by id desc limit 1`,
  )
  return d!
}

async function audits(did: string, action: string) {
  return db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.did, did), eq(auditLog.action, action)))
    .orderBy(desc(auditLog.id))
}

/** Whether the relay would take this login now: its own query and verifyPassword. */
async function relayAccepts(username: string, password: string): Promise<boolean> {
  const [c] = await db.execute<{ hash: string }>(
    sql`select password_hash as hash from smtp_credentials where username = ${username} and revoked_at is null`,
  )
  return c ? verifyPassword(password, c.hash) : false
}

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const dir = mkdtempSync(join(tmpdir(), 'atmos-account-'))
  createKeyringFile(join(dir, 'kek'))
  createKeyringFile(join(dir, 'relay-kek'))
  keyring = loadKeyring(join(dir, 'relay-kek'))
  labeler = createServer((req, res) => {
    const a = labelAnswer
    if (a === 'down') {
      req.socket.destroy()
      return
    }
    res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body)
  })
  await new Promise<void>((r) => labeler.listen(0, '127.0.0.1', r))
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_REDIS_PREFIX: prefix,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: join(dir, 'kek'),
      ATMOS_ADMIN_ENROLL_KEK_FILE: join(dir, 'relay-kek'),
      ATMOS_ADMIN_ENROLL_RELAY_HOST: 'smtp.pool.example',
      ATMOS_ADMIN_LABELER_URL: `http://127.0.0.1:${(labeler.address() as AddressInfo).port}`,
      ATMOS_ADMIN_LABELER_DID: LABELER,
      // Handles do not resolve here (no PLC): the page says "not verified" at once.
      ATMOS_ADMIN_OAUTH_PLC_URL: `http://127.0.0.1:${await closedPort()}`,
      ATMOS_ADMIN_WARMING_TIERS: '0:7,3:200',
      ATMOS_ADMIN_DAILY_CAP: '5000',
      ATMOS_ADMIN_CLEAN_SENDER_MIN_VOLUME: '120',
    },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', 'silent') })
  await service.start()
  await service.whenStarted()
  base = service.webUrl!
  redis = testRedis()
  queue = new TypedQueue(memberStatusChanged, redis, prefix)
})

after(async () => {
  await service?.destroy()
  await queue?.close()
  if (redis) {
    await deletePrefix(redis, prefix)
    redis.disconnect()
  }
  await new Promise<void>((r) => (labeler ? labeler.close(() => r()) : r()))
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

describe('/account', () => {
  let a: Member
  let b: Member
  let sa: Session
  before(async () => {
    a = await member('pagea', 'pagea.example')
    b = await member('pageb', 'pageb.example')
    sa = await session(a.did)
  })

  it('sends a signed-out browser to sign in', async () => {
    for (const path of ['/account', '/account/messages', '/account/suppressions', '/account/domains/pagea.example']) {
      const res = await fetch(`${base}${path}`, { redirect: 'manual' })
      assert.equal(res.status, 303, path)
      assert.equal(res.headers.get('location'), '/')
    }
  })

  it("shows the member's own domains, today's cap from the configured tiers, labels with their expiry", async () => {
    labelAnswer = {
      status: 200,
      body: JSON.stringify({
        labels: [
          {
            src: LABELER,
            uri: a.did,
            val: 'verified-mail-operator',
            cts: '2026-12-06T10:00:00.000Z',
            exp: '2099-12-11T10:00:00.000Z',
          },
          { src: LABELER, uri: a.did, val: 'relay-member', cts: '2026-12-06T10:00:00.000Z' },
        ],
      }),
    }
    const res = await get(sa, '/account')
    assert.equal(res.status, 200)
    const html = await res.text()
    assert.match(html, new RegExp(`<code data-testid="did">${a.did}</code>`))
    assert.match(html, /<h3 id="standing-0-h">pagea\.example<\/h3>/)
    assert.doesNotMatch(html, /pageb\.example/, "never another member's domain")
    assert.match(html, /7 recipients/, "today's cap from admin.warmingTiers (0:7)")
    assert.match(
      html,
      /verified-mail-operator<\/code><\/strong>[^<]*Since 2026-12-06 10:00 UTC; expires 2099-12-11 10:00 UTC/,
    )
    assert.match(html, /relay-member<\/code><\/strong>[^<]*does not expire/)
    assert.match(html, /href="\/account\/domains\/pagea\.example\/keys"/)
    assert.match(html, /href="\/account\/domains\/pagea\.example\/api-key"/)
    assert.match(html, /href="\/account\/messages"/)
    assert.match(html, /href="\/account\/suppressions"/)
    assert.match(html, /<a href="\/enroll">Enrol another domain<\/a>/, 'one of two domains: may enrol another')
    assert.match(html, /Mail over the last 24 hours/)
    assert.match(html, /<a href="\/account\?window=24h" aria-current="page">/)
  })

  it('switches the figures window, refuses an unknown one with 400', async () => {
    const week = await (await get(sa, '/account?window=7d')).text()
    assert.match(week, /Mail over the last 7 days/)
    assert.match(week, /<a href="\/account\?window=7d" aria-current="page">/)
    assert.match(await (await get(sa, '/account?window=30d')).text(), /Mail over the last 30 days/)
    const bad = await get(sa, '/account?window=1y')
    assert.equal(bad.status, 400)
    assert.match(await bad.text(), /24h, 7d or 30d/)
  })

  it('shows why labels are missing when the labeler fails or is away, and the rest of the page', async () => {
    labelAnswer = { status: 503, body: '{}' }
    let res = await get(sa, '/account')
    assert.equal(res.status, 200)
    let html = await res.text()
    assert.match(html, /Your labels cannot be shown now: the labeler answered HTTP 503/)
    assert.match(html, /pagea\.example/)
    labelAnswer = 'down'
    res = await get(sa, '/account')
    assert.equal(res.status, 200)
    html = await res.text()
    assert.match(html, /Your labels cannot be shown now: the labeler could not be reached/)
    assert.match(html, /Mail over the last 24 hours/)
    labelAnswer = { status: 200, body: '{"labels":[]}' }
  })

  it('shows clean-sender held or not, with the 30-day figures and the configured thresholds behind it', async () => {
    const d = await member('paged', 'paged.example')
    const at = new Date(Date.now() - 3_600_000)
    const ids = Array.from({ length: 150 }, () => randomUUID())
    await db.insert(messages).values(
      ids.map((id) => ({
        id,
        memberId: d.id,
        envelopeFrom: 'news@paged.example',
        returnPath: 'b+x@bounces.example',
        size: 10,
        body: Buffer.from('x'),
        expiresAt: new Date(Date.now() + 86_400_000),
        receivedAt: at,
      })),
    )
    await db.insert(messageRecipients).values(
      ids.map((messageId, i) => ({
        messageId,
        address: `r${i}@example.net`,
        domain: 'example.net',
        state: 'delivered' as const,
        updatedAt: at,
      })),
    )
    await db.insert(feedbackEvents).values(
      [1, 2, 3, 4].map((i) => ({
        type: 'hard_bounce' as const,
        memberId: d.id,
        recipient: `g${i}@example.net`,
        source: 'dsn',
      })),
    )
    const sd = await session(d.did)
    labelAnswer = {
      status: 200,
      body: JSON.stringify({
        labels: [{ src: LABELER, uri: d.did, val: 'clean-sender', cts: '2026-12-06T10:00:00.000Z' }],
      }),
    }
    let html = await (await get(sd, '/account')).text()
    assert.match(html, /clean-sender<\/code><\/strong>: your mail over the last 30 days/)
    assert.match(html, /<span data-testid="clean-sender-state">held<\/span>/)
    assert.match(html, /You hold it\. It stays until your hard-bounce rate reaches 5\.0 %/)
    assert.match(
      html,
      /Messages with an outcome<\/th><td>150<\/td><td>at least 120<\/td>/,
      'admin.cleanSender.minVolume',
    )
    assert.match(html, /Hard-bounce rate<\/th><td>2\.7 % \(4\)<\/td><td>2\.0 %<\/td><td>5\.0 %<\/td>/)
    assert.match(html, /Complaint rate<\/th><td>0\.00 % \(0 of 150 delivered\)<\/td><td>0\.05 %<\/td><td>0\.10 %<\/td>/)
    labelAnswer = { status: 200, body: '{"labels":[]}' }
    html = await (await get(sd, '/account')).text()
    assert.match(html, /<span data-testid="clean-sender-state">not held<\/span>/)
    assert.match(html, /You do not hold it\. It is issued with a hard-bounce rate below 2\.0 %\./)
    // Another member's figures are its own: none sent, so volume is what it lacks.
    const other = await (await get(sa, '/account')).text()
    assert.match(other, /It is issued with at least 120 messages in 30 days \(you sent 0\)\./)
  })

  it('offers no further enrolment at admin.maxDomainsPerMember', async () => {
    const c = await member('pagec', 'pagec.example')
    await addDomain(db.$client, keyring, { did: c.did, domain: 'pagec2.example', maxDomains: 2, actor: 'operator:t' })
    const html = await (await get(await session(c.did), '/account')).text()
    assert.doesNotMatch(html, /href="\/enroll"/)
    assert.match(html, /the most one account may hold here/)
  })

  it('a signed-in DID that is no member yet sees its account and the way to enrol', async () => {
    const res = await get(await session('did:plc:notamembernotamembernota'), '/account')
    assert.equal(res.status, 200)
    const html = await res.text()
    assert.match(html, /not a member yet/)
    assert.match(html, /<a href="\/enroll">Enrol a mail domain<\/a>/)
  })

  describe('message log', () => {
    before(async () => {
      // 51 recipients of a's (one past a page), one of b's.
      await db.execute(sql`
        insert into messages (id, member_id, domain_id, envelope_from, return_path, message_id_header, size, body,
                              expires_at, received_at, state)
        select gen_random_uuid(), d.member_id, d.id, 'news@' || d.domain, 'b+x@pool.example',
               '<' || d.domain || '-' || g || '@mail>', 3, '\\x616263'::bytea, now() + interval '3 days',
               now() - (g || ' minutes')::interval, 'done'
        from domains d cross join generate_series(1, 51) g
        where d.domain = 'pagea.example' or (d.domain = 'pageb.example' and g = 1)`)
      await db.execute(sql`
        insert into message_recipients (message_id, address, domain, state, attempts, last_reply)
        select m.id, 'rcpt' || substring(m.message_id_header from '-([0-9]+)@') || '@'
                 || (case when m.member_id = ${b.id} then 'secret-b.example' else 'r.example' end),
               'r.example', 'delivered', 1, '250 ok'
        from messages m where m.member_id in (${a.id}, ${b.id})`)
    })

    it("pages through the member's own log and finds by recipient and Message-ID", async () => {
      const first = await (await get(sa, '/account/messages')).text()
      assert.equal((first.match(/<tr><td><time/g) ?? []).length, 50)
      assert.doesNotMatch(first, /secret-b\.example/)
      const next = /<a rel="next" href="([^"]+)"/.exec(first)?.[1]?.replace(/&amp;/g, '&')
      assert.ok(next, 'a link to the older page')
      const second = await (await get(sa, next)).text()
      assert.equal((second.match(/<tr><td><time/g) ?? []).length, 1)
      assert.match(second, /rcpt51@r\.example/)

      const byRcpt = await (await get(sa, '/account/messages?field=recipient&q=rcpt7%40r.example')).text()
      assert.equal((byRcpt.match(/<tr><td><time/g) ?? []).length, 1)
      assert.match(byRcpt, /rcpt7@r\.example/)
      const byId = await (await get(sa, '/account/messages?field=messageId&q=%3Cpagea.example-9%40mail%3E')).text()
      assert.equal((byId.match(/<tr><td><time/g) ?? []).length, 1)
      assert.match(byId, /rcpt9@r\.example/)
      // b's recipient is not found from a's account, even by its exact address.
      const theirs = await (await get(sa, '/account/messages?field=recipient&q=rcpt1%40secret-b.example')).text()
      assert.match(theirs, /No message of the last 30 days matches this search/)
    })

    it("refuses another member's domain or a bad search with 400 and shows only the member's log", async () => {
      const res = await get(sa, '/account/messages?domain=pageb.example')
      assert.equal(res.status, 400)
      const html = await res.text()
      assert.match(html, /pick one of your own domains/)
      assert.doesNotMatch(html, /secret-b\.example/)
      const bad = await get(sa, '/account/messages?field=recipient&q=a%20b')
      assert.equal(bad.status, 400)
      assert.match(await bad.text(), /spaces or control characters/)
    })
  })

  describe('suppressions', () => {
    before(async () => {
      await suppress(db, {
        memberId: a.id,
        address: 'gone@r.example',
        reason: 'hard_bounce',
        detail: '550 no such user',
      })
      await suppress(db, { memberId: a.id, address: 'angry@r.example', reason: 'complaint' })
      await suppress(db, { memberId: b.id, address: 'bonly@r.example', reason: 'hard_bounce' })
    })

    it('lists the entries with their reasons, a lift button only where the member may lift', async () => {
      const html = await (await get(sa, '/account/suppressions')).text()
      assert.match(html, /gone@r\.example/)
      assert.match(html, /550 no such user/)
      assert.match(html, /Complaint: the recipient marked your mail as spam/)
      assert.match(html, /<button type="submit" data-confirm="Send mail to gone@r\.example again\?">/)
      assert.doesNotMatch(html, /Lift angry@r\.example/)
      assert.match(html, /Only a pool operator can lift a complaint/)
      assert.doesNotMatch(html, /bonly@r\.example/)
    })

    it('lifts a bounce with an audit row; refuses a complaint (403), an address not on the list (404), no token (403)', async () => {
      const res = await post(sa, '/account/suppressions/lift', { address: 'Gone@r.example' })
      assert.equal(res.status, 303)
      assert.equal(res.headers.get('location'), '/account/suppressions?lifted=1')
      const standing = await db.execute(
        sql`select 1 from suppressions where member_id = ${a.id} and address = 'gone@r.example' and removed_at is null`,
      )
      assert.equal(standing.length, 0)
      const [row] = await audits(a.did, 'suppression.lifted')
      assert.ok(row, 'an audit row')
      assert.equal(row.actor, `admin:${a.did}`)
      assert.equal(row.memberId, a.id)
      const detail = row.detail as { ip: string; address: string }
      assert.deepEqual({ ip: detail.ip, address: detail.address }, { ip: '127.0.0.1', address: 'gone@r.example' })

      const complaint = await post(sa, '/account/suppressions/lift', { address: 'angry@r.example' })
      assert.equal(complaint.status, 403)
      assert.match(await complaint.text(), /only a pool operator can lift that entry/)
      const theirs = await post(sa, '/account/suppressions/lift', { address: 'bonly@r.example' })
      assert.equal(theirs.status, 404)
      const bad = await post(sa, '/account/suppressions/lift', { address: 'not an address' })
      assert.equal(bad.status, 400)
      const forged = await post(sa, '/account/suppressions/lift', { address: 'angry@r.example' }, { csrf: false })
      assert.equal(forged.status, 403)
      const left = await db.execute<{ member_id: string; address: string }>(
        sql`select member_id::text, address from suppressions where removed_at is null order by address`,
      )
      assert.deepEqual(
        left.map((r) => r.address),
        ['angry@r.example', 'bonly@r.example'],
      )
    })
  })
})

describe('/account/domains/:domain', () => {
  let a: Member
  let b: Member
  let sa: Session
  before(async () => {
    a = await member('doma', 'doma.example')
    b = await member('domb', 'domb.example')
    sa = await session(a.did)
  })

  it("answers every route for another member's domain with the same 404 as for no one's, and changes nothing", async () => {
    const routes: Array<[string, string, Record<string, string>?]> = [
      ['GET', ''],
      ['POST', '/forward-to', { forward_to: 'thief@evil.example' }],
      ['POST', '/forward-to', { clear: '1' }],
      ['POST', '/credential'],
      ['GET', '/remove'],
      ['POST', '/remove', { confirm: 'domb.example' }],
    ]
    for (const [method, rest, fields] of routes) {
      const answers: string[] = []
      for (const domain of ['domb.example', 'nobody-has-this.example', 'not a domain']) {
        const path = `/account/domains/${encodeURIComponent(domain)}${rest}`
        const res = method === 'GET' ? await get(sa, path) : await post(sa, path, fields ?? {})
        assert.equal(res.status, 404, `${method} ${path}`)
        answers.push((await res.text()).replace(/nobody-has-this\.example|domb\.example|not a domain/g, 'X'))
      }
      assert.equal(answers[0], answers[1], `${method} ${rest}: no hint that it exists`)
    }
    const row = await domainRow('domb.example')
    assert.equal(row.forward_to, null)
    assert.equal(row.removed_at, null)
    assert.equal(await relayAccepts(b.username, b.password), true, "b's password still works")
    const touched = await db.execute(
      sql`select action from audit_log where domain = 'domb.example' and actor like 'admin:%'`,
    )
    assert.equal(touched.length, 0)
  })

  it("removeDomain bound to a member leaves another member's domain alone (the race after the page's look)", async () => {
    await assert.rejects(
      removeDomain(db.$client, 'domb.example', 'x', `admin:${a.did}`, { memberId: a.id }),
      (err: Error) => err instanceof DomainError && /no member holds domb\.example/.test(err.message),
    )
    assert.equal((await domainRow('domb.example')).removed_at, null)
  })

  it('refuses every POST without the form token (403) and changes nothing', async () => {
    const posts: Array<[string, Record<string, string>]> = [
      ['/account/domains/doma.example/forward-to', { forward_to: 'x@inbox.example' }],
      ['/account/domains/doma.example/credential', {}],
      ['/account/domains/doma.example/remove', { confirm: 'doma.example' }],
    ]
    for (const [path, fields] of posts) {
      const res = await post(sa, path, fields, { csrf: false })
      assert.equal(res.status, 403, path)
      assert.match(await res.text(), /form token is missing/)
    }
    const row = await domainRow('doma.example')
    assert.deepEqual(row, { forward_to: null, removed_at: null })
    assert.equal(await relayAccepts(a.username, a.password), true)
  })

  it('sets and clears the forward-to address, with audit rows', async () => {
    const page = await (await get(sa, '/account/domains/doma.example')).text()
    assert.match(page, /<label for="forward-to">/)
    const res = await post(sa, '/account/domains/doma.example/forward-to', { forward_to: ' Me.Myself@Inbox.Example ' })
    assert.equal(res.status, 303)
    assert.equal(res.headers.get('location'), '/account/domains/doma.example?done=forward-set')
    assert.equal((await domainRow('doma.example')).forward_to, 'Me.Myself@inbox.example')
    const shown = await (await get(sa, '/account/domains/doma.example?done=forward-set')).text()
    assert.match(shown, /Replies are forwarded to the new address/)
    assert.match(shown, /data-testid="forward-to">Me\.Myself@inbox\.example</)
    const [set] = await audits(a.did, 'domain.forward_to_set')
    assert.equal(set?.actor, `admin:${a.did}`)
    assert.equal(set?.domain, 'doma.example')
    assert.deepEqual(set?.detail, { ip: '127.0.0.1', from: null, to: 'Me.Myself@inbox.example' })

    const cleared = await post(sa, '/account/domains/doma.example/forward-to', { clear: '1' })
    assert.equal(cleared.status, 303)
    assert.equal((await domainRow('doma.example')).forward_to, null)
    const [clr] = await audits(a.did, 'domain.forward_to_cleared')
    assert.deepEqual(clr?.detail, { ip: '127.0.0.1', from: 'Me.Myself@inbox.example', to: null })
  })

  it('shows the domain’s recent forwards and what became of each, the newest first', async () => {
    const empty = await (await get(sa, '/account/domains/doma.example')).text()
    assert.match(empty, /<h2>Recent forwards<\/h2><p>No replies forwarded yet\.<\/p>/)
    const [dom] = await db.execute<{ id: string; member_id: string }>(
      sql`select id::text, member_id::text from domains where domain = 'doma.example' and removed_at is null`,
    )
    const inbound = async (from: string) => {
      const [row] = await db.execute<{ id: string }>(sql`
        insert into inbound_messages (mail_from, rcpt_to, size, raw, kind, state)
        values (${from}, array['support@doma.example'], 1, '\\x78'::bytea, 'reply', 'forwarded') returning id::text`)
      return Number(row!.id)
    }
    const messageId = randomUUID()
    await db.insert(messages).values({
      id: messageId,
      memberId: null,
      envelopeFrom: 'srs0=x@bounces.example',
      returnPath: 'srs0=x@bounces.example',
      size: 1,
      body: Buffer.from('x'),
      expiresAt: new Date(Date.now() + 86_400_000),
    })
    await db.insert(messageRecipients).values({
      messageId,
      address: 'me@inbox.example',
      domain: 'inbox.example',
      state: 'delivered',
      lastReply: '250 2.0.0 Ok',
    })
    await db.execute(sql`
      insert into inbound_forwards (inbound_id, member_id, domain_id, recipient, forward_to, state, message_id, created_at)
      values (${await inbound('alice@sender.example')}, ${dom!.member_id}, ${dom!.id}, 'support@doma.example',
              'me@inbox.example', 'forwarded', ${messageId}, now() - interval '1 minute')`)
    await db.execute(sql`
      insert into inbound_forwards (inbound_id, member_id, domain_id, recipient, forward_to, state, reason)
      values (${await inbound('<script>@evil.example')}, ${dom!.member_id}, ${dom!.id}, 'support@doma.example',
              'me@inbox.example', 'refused', 'forward-to me@inbox.example is on the member''s suppression list: not forwarded')`)
    const page = await (await get(sa, '/account/domains/doma.example')).text()
    const table = /<table data-testid="forwards">[\s\S]*?<\/table>/.exec(page)?.[0] ?? ''
    const rows = [...table.matchAll(/<tr><td>[\s\S]*?<\/tr>/g)].map((m) => m[0])
    assert.equal(rows.length, 2)
    assert.match(rows[0]!, /&lt;script&gt;@evil\.example/, 'the sender is escaped')
    assert.match(
      rows[0]!,
      /data-state="refused">refused<\/td><td>forward-to me@inbox\.example is on the member&#39;s suppression list/,
    )
    assert.match(rows[1]!, /alice@sender\.example<\/td><td>support@doma\.example<\/td><td>me@inbox\.example<\/td>/)
    assert.match(rows[1]!, /data-state="delivered">delivered<\/td><td>250 2\.0\.0 Ok</)
    // Another member sees none of them on its own domain page.
    const other = await (await get(await session(b.did), '/account/domains/domb.example')).text()
    assert.match(other, /No replies forwarded yet/)
  })

  it('refuses a forward-to that is not one plain address (400, nothing stored)', async () => {
    const bad = [
      '',
      'no-at-sign.example',
      'Name <me@inbox.example>',
      'me@inbox.example, you@inbox.example',
      'a@b@inbox.example',
      '"quoted"@inbox.example',
      'me..too@inbox.example',
      '.me@inbox.example',
      'me@inbox.example.',
      'me@inbox.example/paypal.com',
      'me@[127.0.0.1]',
      'me@localhost',
      `${'x'.repeat(65)}@inbox.example`,
      `me@${'a'.repeat(250)}.example`,
      'me@doma.example',
      'me@bücher.example',
      'me\r\nBcc: x@evil.example@inbox.example',
    ]
    for (const value of bad) {
      const res = await post(sa, '/account/domains/doma.example/forward-to', { forward_to: value })
      assert.equal(res.status, 400, JSON.stringify(value))
      const html = await res.text()
      assert.match(html, /<p id="forward-error" class="error" role="alert">/)
      assert.match(html, /aria-invalid="true"/)
    }
    assert.equal((await domainRow('doma.example')).forward_to, null)
    assert.equal(parseForwardTo('a.b+tag@x-y.example', 'doma.example'), 'a.b+tag@x-y.example')
    assert.equal(parseForwardTo('me@sub.doma.example', 'doma.example'), 'me@sub.doma.example')
  })

  it('issues a new SMTP password shown once: the old one stops working, the new one works', async () => {
    assert.equal(await relayAccepts(a.username, a.password), true)
    const res = await post(sa, '/account/domains/doma.example/credential', {})
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('cache-control'), 'no-store')
    const html = await res.text()
    const password = /<dt>Password<\/dt><dd><code>([^<]+)<\/code>/.exec(html)?.[1]
    assert.ok(password, 'the new password is on the page')
    assert.match(html, /PDS_EMAIL_SMTP_URL=smtp:\/\/doma\.example:[^@]+@smtp\.pool\.example:587\//)
    assert.equal(await relayAccepts(a.username, a.password), false, 'the old password fails')
    assert.equal(await relayAccepts(a.username, password), true, 'the new one works')
    // The member API takes the relay credential the same way.
    const basic = (p: string) => `Basic ${Buffer.from(`${a.username}:${p}`).toString('base64')}`
    assert.equal((await fetch(`${base}/api/member`, { headers: { authorization: basic(a.password) } })).status, 401)
    assert.equal((await fetch(`${base}/api/member`, { headers: { authorization: basic(password) } })).status, 200)
    const [row] = await audits(a.did, 'credential.rotated')
    assert.ok(row, 'an audit row')
    assert.equal(row.actor, `admin:${a.did}`)
    assert.equal((row.detail as { ip: string }).ip, '127.0.0.1')
    assert.doesNotMatch(JSON.stringify(row.detail), new RegExp(password), 'no secret in the audit log')
    // Nowhere else: the domain page does not show it.
    assert.doesNotMatch(await (await get(sa, '/account/domains/doma.example')).text(), new RegExp(password))
  })

  it('removes the domain only after the name is typed: audit row, the labeler told, credential revoked', async () => {
    const confirm = await (await get(sa, '/account/domains/doma.example/remove')).text()
    assert.match(confirm, /<label for="confirm-domain">Type the domain name to confirm<\/label>/)
    for (const typed of ['', 'domb.example', 'doma.exampl']) {
      const res = await post(sa, '/account/domains/doma.example/remove', { confirm: typed })
      assert.equal(res.status, 400, JSON.stringify(typed))
      assert.match(await res.text(), /id="confirm-error"/)
    }
    assert.equal((await domainRow('doma.example')).removed_at, null)

    const res = await post(sa, '/account/domains/doma.example/remove', { confirm: ' DOMA.example ' })
    assert.equal(res.status, 200)
    assert.match(await res.text(), /The labeler was told/)
    assert.ok((await domainRow('doma.example')).removed_at)
    const [row] = await audits(a.did, 'domain.removed')
    assert.ok(row, 'an audit row')
    assert.equal(row.actor, `admin:${a.did}`)
    const detail = row.detail as { ip: string; changeId: number; revokedCredentials: number }
    assert.equal(detail.ip, '127.0.0.1')
    assert.equal(detail.revokedCredentials, 1)
    const job = await queue.queue.getJob(statusJobId(detail.changeId))
    assert.deepEqual(job?.data, {
      did: a.did,
      status: 'suspended',
      reason: 'domain removed: given up by its member on the account page',
      changeId: detail.changeId,
    })
    const [cred] = await db.execute<{ live: string }>(
      sql`select count(*)::text as live from smtp_credentials where username = 'doma.example' and revoked_at is null`,
    )
    assert.equal(cred?.live, '0')
    assert.equal((await get(sa, '/account/domains/doma.example')).status, 404, 'no longer a live domain of the member')
    assert.equal((await domainRow('domb.example')).removed_at, null)
  })
})

describe('forward-to parsing', () => {
  it('keeps the local part as typed and lower-cases the domain', () => {
    assert.equal(parseForwardTo("o'brien+x@Example.ORG", 'a.example'), "o'brien+x@example.org")
    assert.throws(() => parseForwardTo('x@a.example', 'a.example'), /would come back/)
  })
})
