import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { loadConfig } from '@atmos/config'
import { auditLog, createDb, type Db, oauthStates, webSessions } from '@atmos/db'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, loadKeyring } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { eq } from 'drizzle-orm'
import { Hono } from 'hono'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { initClientKeys, loadClientKeys, rotateClientKeys } from '../src/oauth/keys.ts'
import { stateStore } from '../src/oauth/stores.ts'
import { AdminService } from '../src/service.ts'
import { WindowLimiter } from '../src/web/rate-limit.ts'
import { csrfTokenFor, startSession } from '../src/web/session.ts'

// The web layer over HTTP against a real admin and Postgres, without a PDS: cookies, CSRF,
// sessions and their expiry, the sign-in rate limit, headers, the confidential client's
// metadata and keys.

const execFileAsync = promisify(execFile)
let tdb: TestDatabase
let db: Db
const services: AdminService[] = []
const dir = mkdtempSync(join(tmpdir(), 'atmos-admin-web-'))
const kekFile = join(dir, 'kek')

async function start(env: Record<string, string>): Promise<AdminService> {
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: kekFile,
      ...env,
    },
  })
  const service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', 'silent') })
  await service.start()
  await service.whenStarted()
  services.push(service)
  return service
}

let loopback: string

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  createKeyringFile(kekFile)
  loopback = (await start({ ATMOS_ADMIN_OPERATORS: 'did:plc:operatoroperatoroperator' })).webUrl!
})

after(async () => {
  for (const s of services) await s.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

/** `name=value` pairs of the response's Set-Cookie headers, with their attributes. */
function cookies(res: Response): Map<string, string> {
  return new Map(res.headers.getSetCookie().map((c) => [c.slice(0, c.indexOf('=')), c]))
}

/** A session row for `did` and the cookie opening it, as a sign-in makes one. */
async function session(did: string, expiresAt = new Date(Date.now() + 3_600_000)) {
  const id = randomBytes(32).toString('base64url')
  await db.insert(webSessions).values({
    idHash: createHash('sha256').update(id).digest('base64url'),
    did,
    expiresAt,
  })
  return { cookie: `atmos_session=${id}`, csrf: csrfTokenFor(id) }
}

describe('web pages and headers', () => {
  it('serves the sign-in page with a CSP without inline scripts, no referrer, no framing', async () => {
    const res = await fetch(`${loopback}/`)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/)
    const csp = res.headers.get('content-security-policy') ?? ''
    assert.match(csp, /script-src 'self'/)
    assert.doesNotMatch(csp, /unsafe-inline/)
    assert.match(csp, /frame-ancestors 'none'/)
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer')
    const html = await res.text()
    assert.doesNotMatch(html, /<script>|<script(?![^>]*\bsrc=)/, 'no inline script')
    assert.match(html, /<label for="identifier">/)
  })

  it('without its key-encryption key file the admin serves its APIs and says sign-in is not available', async () => {
    const s = await start({ ATMOS_ADMIN_KEK_FILE: join(dir, 'missing-kek') })
    const res = await fetch(`${s.webUrl}/`)
    assert.equal(res.status, 503)
    const text = await res.text()
    assert.match(text, /Sign-in is not available/)
    assert.doesNotMatch(text, /missing-kek/, 'no file path on a public page')
    assert.equal((await fetch(`${s.webUrl}/api/member`)).status, 401)
  })

  it('answers an unknown page with an HTML 404 and an unknown API path with JSON', async () => {
    const page = await fetch(`${loopback}/nowhere`)
    assert.equal(page.status, 404)
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
    const api = await fetch(`${loopback}/api/nowhere`)
    assert.equal(api.status, 404)
    assert.equal(((await api.json()) as { error: string }).error, 'NotFound')
  })

  it('sets the pre-sign-in cookie HttpOnly and SameSite=Lax, not Secure on loopback http', async () => {
    const res = await fetch(`${loopback}/`)
    const pre = cookies(res).get('atmos_pre') ?? ''
    assert.match(pre, /HttpOnly/)
    assert.match(pre, /SameSite=Lax/)
    assert.doesNotMatch(pre, /Secure/)
  })

  it('sets Secure cookies when the public URL is https', async () => {
    const keysFile = join(dir, 'keys-secure.json')
    await initClientKeys(keysFile)
    const s = await start({ ATMOS_ADMIN_PUBLIC_URL: 'https://admin.example', ATMOS_ADMIN_OAUTH_KEYS_FILE: keysFile })
    const pre = cookies(await fetch(`${s.webUrl}/`)).get('atmos_pre') ?? ''
    assert.match(pre, /; Secure/)
    assert.match(pre, /HttpOnly/)
  })
})

describe('CSRF', () => {
  it('refuses a sign-in form post without the pre-sign-in token, or from another site', async () => {
    const first = await fetch(`${loopback}/`)
    const pre = /atmos_pre=([^;]+)/.exec(cookies(first).get('atmos_pre') ?? '')![1]!
    const post = (body: Record<string, string>, headers: Record<string, string> = {}) =>
      fetch(`${loopback}/signin`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: `atmos_pre=${pre}`, 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams(body),
      })
    const none = await post({ identifier: 'not valid!' })
    assert.equal(none.status, 403)
    assert.match(await none.text(), /form token is missing/)
    const cross = await post({ identifier: 'not valid!', _csrf: pre }, { 'sec-fetch-site': 'cross-site' })
    assert.equal(cross.status, 403)
    const opaque = await post({ identifier: 'not valid!', _csrf: pre }, { origin: 'null' })
    assert.equal(opaque.status, 403, 'an opaque origin without Sec-Fetch-Site same-origin')
    const ours = await post({ identifier: 'not valid!', _csrf: pre }, { origin: new URL(loopback).origin })
    assert.equal(ours.status, 400, 'past CSRF, the identifier is refused')
    assert.match(await ours.text(), /Enter a handle/)
  })

  it('wants the session’s own token for a signed-in post; another session’s token does not do', async () => {
    const a = await session('did:plc:csrfaaaaaaaaaaaaaaaaaaaa')
    const b = await session('did:plc:csrfbbbbbbbbbbbbbbbbbbbb')
    const signout = (s: { cookie: string }, token: string) =>
      fetch(`${loopback}/signout`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie: s.cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _csrf: token }),
      })
    assert.equal((await signout(a, b.csrf)).status, 403)
    assert.equal((await signout(a, a.csrf)).status, 303)
  })
})

describe('sessions', () => {
  it('every sign-in sets a new id (HttpOnly, SameSite=Lax, Max-Age of the ttl) and revokes the browser’s previous one', async () => {
    const did = 'did:plc:rotateaaaaaaaaaaaaaaaaaa'
    const opts = { ttlMs: 2 * 3_600_000, secure: true, operators: new Set<string>() }
    const app = new Hono()
    app.get('/start', async (c) => {
      const hash = await startSession(
        c,
        db,
        opts,
        did,
        { ip: '192.0.2.1', userAgent: 'test' },
        c.req.query('replacing'),
      )
      return c.text(hash)
    })
    const first = await app.request('/start')
    const firstHash = await first.text()
    const cookie = cookies(first).get('atmos_session') ?? ''
    assert.match(cookie, /HttpOnly/)
    assert.match(cookie, /SameSite=Lax/)
    assert.match(cookie, /Secure/)
    assert.match(cookie, /Max-Age=7200/)
    assert.match(cookie, /Path=\//)
    const second = await app.request(`/start?replacing=${encodeURIComponent(firstHash)}`)
    const secondHash = await second.text()
    assert.notEqual(secondHash, firstHash)
    assert.notEqual(cookies(second).get('atmos_session'), cookie)
    const rows = await db.select().from(webSessions).where(eq(webSessions.did, did))
    assert.deepEqual(
      rows.map((r) => [r.idHash, r.revokedAt !== null, r.ip, r.expiresAt.getTime() - r.createdAt.getTime()]),
      [
        [firstHash, true, '192.0.2.1', 7_200_000],
        [secondHash, false, '192.0.2.1', 7_200_000],
      ],
    )
  })

  it('an expired or revoked session is signed out, and its cookie dropped', async () => {
    const expired = await session('did:plc:expiredaaaaaaaaaaaaaaaaa', new Date(Date.now() - 1000))
    const res = await fetch(`${loopback}/account`, { headers: { cookie: expired.cookie }, redirect: 'manual' })
    assert.equal(res.status, 303)
    assert.equal(res.headers.get('location'), '/')
    assert.match(cookies(res).get('atmos_session') ?? '', /Max-Age=0/)

    const live = await session('did:plc:liveaaaaaaaaaaaaaaaaaaaa')
    const ok = await fetch(`${loopback}/account`, { headers: { cookie: live.cookie }, redirect: 'manual' })
    assert.equal(ok.status, 200)
    assert.match(ok.headers.get('cache-control') ?? '', /no-store/)
    await db
      .update(webSessions)
      .set({ revokedAt: new Date() })
      .where(eq(webSessions.did, 'did:plc:liveaaaaaaaaaaaaaaaaaaaa'))
    const revoked = await fetch(`${loopback}/account`, { headers: { cookie: live.cookie }, redirect: 'manual' })
    assert.equal(revoked.status, 303)
  })

  it('signing out revokes the row and writes an audit row with the address', async () => {
    const did = 'did:plc:signoutaaaaaaaaaaaaaaaaa'
    const s = await session(did)
    const res = await fetch(`${loopback}/signout`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: s.cookie, 'x-csrf-token': s.csrf },
    })
    assert.equal(res.status, 303)
    const [row] = await db.select().from(webSessions).where(eq(webSessions.did, did))
    assert.ok(row?.revokedAt)
    const [audit] = await db.select().from(auditLog).where(eq(auditLog.did, did))
    assert.equal(audit?.action, 'web.signout')
    assert.equal(audit?.actor, `admin:${did}`)
    assert.deepEqual(audit?.detail, { ip: '127.0.0.1', sessions: 1 })
  })

  it('a non-operator gets a 403 page on /operator; signed out is sent to sign-in', async () => {
    const s = await session('did:plc:memberaaaaaaaaaaaaaaaaaa')
    const res = await fetch(`${loopback}/operator`, { headers: { cookie: s.cookie } })
    assert.equal(res.status, 403)
    assert.match(await res.text(), /not one of this pool(&#39;|')s operators/)
    const out = await fetch(`${loopback}/operator`, { redirect: 'manual' })
    assert.equal(out.status, 303)
    const op = await session('did:plc:operatoroperatoroperator')
    assert.equal((await fetch(`${loopback}/operator`, { headers: { cookie: op.cookie } })).status, 200)
  })
})

describe('sign-in rate limit', () => {
  it('counts sign-in starts per address: past the limit a 429 page with Retry-After', async () => {
    // An admin of its own: the other tests' sign-ins count against the same address.
    const fresh = (await start({ ATMOS_ADMIN_SIGNIN_PER_MINUTE: '3' })).webUrl!
    const first = await fetch(`${fresh}/`)
    const pre = /atmos_pre=([^;]+)/.exec(cookies(first).get('atmos_pre') ?? '')![1]!
    const codes: number[] = []
    let last: Response | undefined
    for (let i = 0; i < 5; i++) {
      last = await fetch(`${fresh}/signin`, {
        method: 'POST',
        headers: { cookie: `atmos_pre=${pre}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ identifier: '!', _csrf: pre }),
      })
      codes.push(last.status)
    }
    assert.deepEqual(codes, [400, 400, 400, 429, 429])
    assert.ok(Number(last!.headers.get('retry-after')) >= 1, JSON.stringify([...last!.headers]))
    assert.match(last!.headers.get('content-type') ?? '', /^text\/html/)
  })

  it('opens a new window once the old one is over', () => {
    let now = 0
    const limiter = new WindowLimiter(2, 60_000, () => now)
    assert.equal(limiter.take('a'), 0)
    assert.equal(limiter.take('a'), 0)
    assert.equal(limiter.take('a'), 60)
    assert.equal(limiter.take('b'), 0, 'another address has its own count')
    now = 59_500
    assert.equal(limiter.take('a'), 1)
    now = 60_000
    assert.equal(limiter.take('a'), 0)
  })
})

describe('the confidential client', () => {
  it('serves its metadata and only the public halves of every key in the file', async () => {
    const keysFile = join(dir, 'keys.json')
    assert.equal(await initClientKeys(keysFile), true)
    assert.equal(await initClientKeys(keysFile), false, 'never overwritten')
    const newer = await rotateClientKeys(keysFile, new Date(Date.now() + 1000))
    const keys = await loadClientKeys(keysFile)
    assert.equal(keys[0]!.kid, newer, 'the newest signs')
    const s = await start({
      ATMOS_ADMIN_PUBLIC_URL: 'https://mail-admin.example',
      ATMOS_ADMIN_OAUTH_KEYS_FILE: keysFile,
    })
    const meta = (await (await fetch(`${s.webUrl}/oauth/client-metadata.json`)).json()) as Record<string, unknown>
    assert.equal(meta.client_id, 'https://mail-admin.example/oauth/client-metadata.json')
    assert.deepEqual(meta.redirect_uris, ['https://mail-admin.example/oauth/callback'])
    assert.equal(meta.token_endpoint_auth_method, 'private_key_jwt')
    assert.equal(meta.scope, 'atproto repo:email.atmos.attestation')
    assert.equal(meta.dpop_bound_access_tokens, true)
    const jwks = (await (await fetch(`${s.webUrl}/oauth/jwks.json`)).json()) as { keys: Record<string, unknown>[] }
    assert.equal(jwks.keys.length, 2)
    assert.ok(
      jwks.keys.every((k) => k.d === undefined && k.kty === 'EC'),
      'no private part',
    )
    // The loopback client has neither.
    assert.equal((await fetch(`${loopback}/oauth/jwks.json`)).status, 404)
  })
})

describe('admin oauth init', () => {
  it('creates the KEK and the signing keys mode 0600, and never overwrites them', async () => {
    const d = mkdtempSync(join(tmpdir(), 'atmos-admin-cli-'))
    const env = { ...process.env, ATMOS_ADMIN_KEK_FILE: join(d, 'kek'), ATMOS_ADMIN_OAUTH_KEYS_FILE: join(d, 'k.json') }
    const cli = new URL('../src/cli.ts', import.meta.url).pathname
    const run = (...args: string[]) => execFileAsync(process.execPath, [cli, ...args], { env })
    const first = await run('oauth', 'init')
    assert.match(first.stdout, /created .*kek \(mode 0600\)/)
    assert.equal(statSync(join(d, 'kek')).mode & 0o777, 0o600)
    assert.equal(statSync(join(d, 'k.json')).mode & 0o777, 0o600)
    const before = readFileSync(join(d, 'k.json'), 'utf8')
    assert.match((await run('oauth', 'init')).stdout, /already exists/)
    assert.equal(readFileSync(join(d, 'k.json'), 'utf8'), before)
    await run('oauth', 'rotate')
    assert.equal((await loadClientKeys(join(d, 'k.json'))).length, 2)
    assert.equal(statSync(join(d, 'k.json')).mode & 0o777, 0o600)
    assert.doesNotMatch(first.stdout + (await run('oauth', 'rotate')).stdout, /"d"/, 'no private key printed')
    await assert.rejects(run('oauth', 'nothing'), (err: { code?: number }) => err.code === 64)
  })
})

describe('sealed OAuth state', () => {
  it('stores a sign-in in flight sealed, opens it from another store (another replica), and not under another key', async () => {
    const keyring = loadKeyring(kekFile)
    const value = { iss: 'https://pds.example', dpopJwk: { kty: 'EC', d: 'secret-part' }, verifier: 'v' }
    await stateStore(db, keyring).set('state-1', value as never)
    const [row] = await db.select().from(oauthStates).where(eq(oauthStates.key, 'state-1'))
    assert.ok(row)
    assert.ok(!row.valueSealed.toString('latin1').includes('secret-part'), 'sealed at rest')
    assert.deepEqual(await stateStore(db, keyring).get('state-1'), value)
    await db.insert(oauthStates).values({ ...row, key: 'state-2' })
    await assert.rejects(async () => stateStore(db, keyring).get('state-2'), /does not open/)
    await stateStore(db, keyring).del('state-1')
    assert.equal(await stateStore(db, keyring).get('state-1'), undefined)
  })
})
