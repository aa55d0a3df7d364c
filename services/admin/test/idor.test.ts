import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db, dmarcReportRows, dmarcReports, webSessions } from '@atmos/db'
import { addMember } from '@atmos/enrolment'
import { unsubscribeToken } from '@atmos/mail-feedback'
import { suppress } from '@atmos/reputation'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, createSecretFile, loadKeyring } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { sql } from 'drizzle-orm'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'
import { csrfTokenFor } from '../src/web/session.ts'

// The sweep over every route the admin serves: a signed-in member (A) names another
// member's (B's) domain, address or id in each route's parameters, with every method the
// route answers, and must get 404 (or 403 on operator routes) with nothing of B's in the
// answer, and B's rows must be as they were. A route with a parameter this sweep does not
// know how to fill fails the test: a new route cannot skip the sweep.

let tdb: TestDatabase
let db: Db
let admin: AdminService
let base = ''
const dir = mkdtempSync(join(tmpdir(), 'atmos-admin-idor-'))
const A = { did: 'did:plc:idormembera0000000000000', domain: 'a-idor.example' }
const B = { did: 'did:plc:idormemberb0000000000000', domain: 'b-idor.example' }
const B_SUPPRESSED = 'someone@b-recipient.example'
/** Written only into B's rows: A cannot type it, so an answer holding it shows B's data. */
const B_MARKER = 'b-private-detail-7f3a'
let bIds: { member: number; domain: number; suppression: number } = { member: 0, domain: 0, suppression: 0 }
let sessionA = { cookie: '', csrf: '' }

/** Every row that is B's, as text: compared before and after the sweep. */
async function snapshotOfB(): Promise<string> {
  const tables = [
    sql`select to_jsonb(t) - 'updated_at' as r from domains t where member_id = ${bIds.member} order by id`,
    sql`select to_jsonb(t) as r from members t where id = ${bIds.member}`,
    sql`select to_jsonb(t) as r from smtp_credentials t where member_id = ${bIds.member} order by id`,
    sql`select to_jsonb(t) as r from dkim_keys t where member_id = ${bIds.member} order by id`,
    sql`select to_jsonb(t) as r from suppressions t where member_id = ${bIds.member} order by id`,
    sql`select to_jsonb(t) as r from audit_log t where did = ${B.did} or member_id = ${bIds.member} order by id`,
  ]
  const out: unknown[] = []
  for (const q of tables) out.push(await db.execute(q))
  // Tables a later change adds for the member (API keys) join the comparison when they exist.
  const [apiKeys] = await db.execute<{ t: string | null }>(sql`select to_regclass('api_keys')::text as t`)
  if (apiKeys?.t) {
    out.push(
      await db.execute(sql`select to_jsonb(t) as r from api_keys t where member_id = ${bIds.member} order by id`),
    )
  }
  return JSON.stringify(out)
}

/** What a route's parameter is filled with: always something of B's. */
function fill(param: string): string | undefined {
  switch (param) {
    case 'domain':
      return B.domain
    case 'address':
      return B_SUPPRESSED
    case 'did':
      return B.did
    case 'id':
    case 'memberId':
      return String(bIds.member)
    case 'domainId':
      return String(bIds.domain)
    case 'suppressionId':
      return String(bIds.suppression)
    case 'name':
      return 'admin.js'
    case 'step':
      return 'activate'
    case 'token':
      // /u/: an unsubscribe token naming B's member and B's suppressed address, under a key
      // that is not the pool's: the one thing A could make up. (A real token is the capability.)
      return unsubscribeToken(
        { secret: 'f'.repeat(64) },
        { memberId: bIds.member, recipient: B_SUPPRESSED, messageId: '00000000-0000-4000-8000-000000000000' },
      )
    default:
      return undefined
  }
}

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const kek = join(dir, 'kek')
  const relayKek = join(dir, 'relay-kek')
  createKeyringFile(kek)
  createKeyringFile(relayKek)
  const tokenSecretFile = join(dir, 'token.secret')
  createSecretFile(tokenSecretFile, randomBytes(32).toString('hex'))
  const keyring = loadKeyring(relayKek)
  await addMember(db.$client, keyring, { did: A.did, domain: A.domain })
  const b = await addMember(db.$client, keyring, { did: B.did, domain: B.domain })
  const s = await suppress(db, {
    memberId: b.id,
    address: B_SUPPRESSED,
    reason: 'hard_bounce',
    domainId: b.domainId,
    detail: B_MARKER,
  })
  bIds = { member: b.id, domain: b.domainId, suppression: s.id }
  // B's DMARC report (the DMARC page of a domain): its reporter and a source's name carry the marker.
  const [report] = await db
    .insert(dmarcReports)
    .values({
      orgName: B_MARKER,
      reportId: 'b-report',
      orgEmail: 'dmarc@reporter.example',
      policyDomain: B.domain,
      memberId: b.id,
      domainId: b.domainId,
      dateBegin: new Date(Date.now() - 86_400_000),
      dateEnd: new Date(),
      rows: 1,
    })
    .returning()
  await db.insert(dmarcReportRows).values({
    reportId: report!.id,
    sourceIp: '203.0.113.77',
    reverseName: `${B_MARKER}.example`,
    poolIp: false,
    count: 3,
    disposition: 'none',
    dkimAligned: 'fail',
    spfAligned: 'fail',
    headerFrom: B.domain,
  })
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: kek,
      ATMOS_ADMIN_ENROLL_KEK_FILE: relayKek,
      ATMOS_ADMIN_TOKEN_SECRET_FILE: tokenSecretFile,
      ATMOS_ADMIN_OPERATORS: 'did:plc:idoroperator00000000000000',
      // Nothing answers here: a page reading labels must still not show B's.
      ATMOS_ADMIN_LABELER_URL: 'http://127.0.0.1:9',
    },
  })
  admin = new AdminService(createContext(config))
  Object.assign(admin.ctx, { logger: createLogger('admin', 'silent') })
  await admin.start()
  await admin.whenStarted()
  base = admin.webUrl!
  const id = randomBytes(32).toString('base64url')
  await db.insert(webSessions).values({
    idHash: createHash('sha256').update(id).digest('base64url'),
    did: A.did,
    expiresAt: new Date(Date.now() + 3_600_000),
  })
  sessionA = { cookie: `atmos_session=${id}`, csrf: csrfTokenFor(id) }
})

after(async () => {
  await admin?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

/** A form body every POST route might read, all of it naming B's things. */
function formFor(): URLSearchParams {
  return new URLSearchParams({
    _csrf: sessionA.csrf,
    domain: B.domain,
    confirm: B.domain,
    address: B_SUPPRESSED,
    forwardTo: `postmaster@${B.domain}`,
    reason: 'idor sweep',
  })
}

describe('another member\u2019s ids in every route', () => {
  it('every parameterised route answers 404 or 403 and leaves B as it was', async () => {
    const routes = admin.routes.filter((r) => r.path.includes('/:'))
    assert.ok(routes.length >= 3, `the sweep found routes: ${routes.map((r) => r.path).join(', ')}`)
    const before = await snapshotOfB()
    const unknown: string[] = []
    const leaks: string[] = []
    for (const route of routes) {
      let path = route.path
      for (const m of route.path.matchAll(/:([A-Za-z]+)/g)) {
        const value = fill(m[1]!)
        if (value === undefined) unknown.push(`${route.method} ${route.path} (:${m[1]})`)
        else path = path.replace(`:${m[1]}`, encodeURIComponent(value))
      }
      if (path.includes('/:') || path.includes('*')) continue
      if (path === '/static/admin.js') continue
      const methods = route.method === 'ALL' ? ['GET', 'POST', 'DELETE'] : [route.method]
      for (const method of methods) {
        const res = await fetch(`${base}${path}`, {
          method,
          headers: {
            cookie: sessionA.cookie,
            origin: base,
            'x-csrf-token': sessionA.csrf,
            ...(method === 'POST' ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
          },
          body: method === 'POST' ? formFor() : undefined,
          redirect: 'manual',
        })
        const text = await res.text()
        const operatorRoute = path.startsWith('/operator') || path.startsWith('/api/operator')
        // /u/ answers a token that does not verify with 400 (the unsubscribe page's own answer).
        const fine = operatorRoute ? [401, 403, 404] : path.startsWith('/u/') ? [400] : [404]
        if (!fine.includes(res.status)) leaks.push(`${method} ${path} answered ${res.status}`)
        // A page may echo what the member typed (B's domain or address); what only B's rows hold, never.
        if (text.includes(B_MARKER) || text.includes(B.did)) leaks.push(`${method} ${path} shows B's data`)
      }
    }
    // Routes that take what they act on from the form, not the path: the same form names B's
    // domain and address. Whatever they answer, B's rows stay as they were and nothing of B's shows.
    const formRoutes = admin.routes.filter(
      (r) => r.method === 'POST' && !r.path.includes('/:') && !/^\/(signin|signout)/.test(r.path),
    )
    assert.ok(
      formRoutes.some((r) => r.path === '/account/suppressions/lift'),
      'the form routes are swept',
    )
    for (const route of formRoutes) {
      const res = await fetch(`${base}${route.path}`, {
        method: 'POST',
        headers: { cookie: sessionA.cookie, origin: base, 'content-type': 'application/x-www-form-urlencoded' },
        body: formFor(),
        redirect: 'manual',
      })
      const text = await res.text()
      if (text.includes(B_MARKER) || text.includes(B.did)) leaks.push(`POST ${route.path} shows B's data`)
      if (res.status < 400) leaks.push(`POST ${route.path} with B's names answered ${res.status}`)
    }
    assert.deepEqual(unknown, [], 'routes with parameters the sweep cannot fill')
    assert.deepEqual(leaks, [])
    assert.equal(await snapshotOfB(), before, "B's rows are unchanged")
  })

  it('operator pages and the operator API answer a member with 403', async () => {
    const operatorRoutes = admin.routes.filter(
      (r) => (r.path.startsWith('/operator') || r.path.startsWith('/api/operator')) && r.method !== 'ALL',
    )
    assert.ok(operatorRoutes.length > 0)
    for (const r of operatorRoutes) {
      const path = r.path.replace(/:([A-Za-z]+)/g, (_m, p: string) => encodeURIComponent(fill(p) ?? 'x'))
      const res = await fetch(`${base}${path}`, {
        method: r.method,
        headers: { cookie: sessionA.cookie, origin: base, 'x-csrf-token': sessionA.csrf },
        redirect: 'manual',
      })
      assert.equal(res.status, 403, `${r.method} ${path}`)
    }
  })

  it("every state-changing route refuses a request without the session's token or from another site", async () => {
    // Not /u/: RFC 8058's one-click POST comes from the recipient's mail provider, cross-site and
    // without our cookie; its authority is the HMAC token in the path (unsubscribe.test.ts
    // shows a forged one refused), and the IDOR sweep above sends it B's names.
    const unsafe = admin.routes.filter(
      (r) => ['POST', 'PUT', 'PATCH', 'DELETE', 'ALL'].includes(r.method) && !r.path.startsWith('/u/'),
    )
    assert.ok(unsafe.filter((r) => r.method !== 'ALL').length >= 6, 'the sweep sees the state-changing routes')
    // A's own things this time: only the token may stand between the request and the change.
    const own = (p: string) =>
      ({ domain: A.domain, address: 'x@a-recipient.example', step: 'activate' })[p] ?? fill(p) ?? 'x'
    const beforeA = JSON.stringify(
      await db.execute(sql`select to_jsonb(t) - 'updated_at' as r from domains t order by id`),
    )
    const accepted: string[] = []
    for (const r of unsafe) {
      const path = r.path.replace(/:([A-Za-z]+)/g, (_m, p: string) => encodeURIComponent(own(p))).replace('/*', '/x')
      for (const method of r.method === 'ALL' ? ['POST', 'DELETE'] : [r.method]) {
        const attempts: Array<[string, Record<string, string>, URLSearchParams]> = [
          ['no token', { cookie: sessionA.cookie }, new URLSearchParams({ domain: A.domain })],
          [
            'wrong token',
            { cookie: sessionA.cookie, 'x-csrf-token': 'A'.repeat(43) },
            new URLSearchParams({ _csrf: 'A'.repeat(43) }),
          ],
          [
            'another site',
            { cookie: sessionA.cookie, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
            new URLSearchParams({ _csrf: sessionA.csrf }),
          ],
        ]
        for (const [what, headers, body] of attempts) {
          const res = await fetch(`${base}${path}`, {
            method,
            headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' },
            body,
            redirect: 'manual',
          })
          await res.body?.cancel()
          if (res.status !== 403) accepted.push(`${method} ${path} with ${what}: ${res.status}`)
        }
      }
    }
    assert.deepEqual(accepted, [])
    const afterA = JSON.stringify(
      await db.execute(sql`select to_jsonb(t) - 'updated_at' as r from domains t order by id`),
    )
    assert.equal(afterA, beforeA)
  })
})
