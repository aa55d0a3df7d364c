import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import { createDb, type Db, domains, members, smtpCredentials, suppressions } from '@atmos/db'
import { suppress } from '@atmos/reputation'
import { createLogger } from '@atmos/runtime'
import { generatePassword, hashPassword } from '@atmos/secrets'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { and, eq } from 'drizzle-orm'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'

// A member's own API with its relay credential, against a real admin service and Postgres.

let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string

type Member = { id: number; did: string; domain: string; domainId: number; username: string; password: string }

/** A member with one domain and a credential scoped to it (username = the domain), as the relay enrols one. */
async function member(tag: string): Promise<Member> {
  const [m] = await db
    .insert(members)
    .values({ did: `did:plc:${tag.padEnd(24, 'a')}`, status: 'active', activatedAt: new Date() })
    .returning({ id: members.id, did: members.did })
  const d = await addDomain(m!.id, `${tag}.example`)
  const cred = await credential(m!.id, d.domain, d.id)
  return { id: m!.id, did: m!.did, domain: d.domain, domainId: d.id, ...cred }
}

async function addDomain(memberId: number, domain: string, activatedAt: Date | null = new Date()) {
  const [d] = await db
    .insert(domains)
    .values({ memberId, domain, status: 'active', activatedAt })
    .returning({ id: domains.id, domain: domains.domain })
  return d!
}

/** A credential of the member: scoped to one of its domains, or (null) to any. */
async function credential(memberId: number, username: string, domainId: number | null) {
  const password = generatePassword()
  await db.insert(smtpCredentials).values({ memberId, domainId, username, passwordHash: await hashPassword(password) })
  return { username, password }
}

const basic = (m: { username: string; password: string }) => ({
  authorization: `Basic ${Buffer.from(`${m.username}:${m.password}`).toString('base64')}`,
})

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const config = loadConfig(adminConfigSchema, {
    env: { ATMOS_DATABASE_URL: tdb.url, ATMOS_HTTP_PORT: '0', ATMOS_ADMIN_WEB_PORT: '0' },
  })
  service = new AdminService(createContext(config))
  Object.assign(service.ctx, { logger: createLogger('admin', 'silent') })
  await service.start()
  await service.whenStarted()
  base = `${service.webUrl}/api/member`
})

after(async () => {
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

describe('member API', () => {
  it('wants the member’s relay credential: a wrong password or unknown user is 401, never which', async () => {
    const m = await member('authm')
    for (const headers of [
      {},
      basic({ username: m.username, password: 'wrong' }),
      basic({ username: 'nobody', password: m.password }),
      { authorization: 'Bearer x' },
    ] as Record<string, string>[]) {
      const res = await fetch(`${base}/suppressions`, { headers })
      assert.equal(res.status, 401)
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="atmos-member"/)
    }
  })

  it('lists the member’s own entries and lets it lift a bounce, but not a complaint, nor another member’s', async () => {
    const a = await member('lista')
    const b = await member('listb')
    await suppress(db, {
      memberId: a.id,
      address: 'gone@r.example',
      reason: 'hard_bounce',
      detail: 'userunknown (550 5.1.1)',
    })
    await suppress(db, { memberId: a.id, address: 'angry@r.example', reason: 'complaint', domainId: a.domainId })
    await suppress(db, { memberId: b.id, address: 'other@r.example', reason: 'hard_bounce' })

    const list = (await (await fetch(`${base}/suppressions`, { headers: basic(a) })).json()) as {
      member: string
      items: { address: string; reason: string; detail: string | null; expiresAt: string | null }[]
    }
    assert.equal(list.member, a.did)
    assert.deepEqual(
      list.items.map((i) => [i.address, i.reason, i.expiresAt === null]),
      [
        ['gone@r.example', 'hard_bounce', false],
        ['angry@r.example', 'complaint', true],
      ],
    )

    const lift = (m: Member, address: string) =>
      fetch(`${base}/suppressions/${encodeURIComponent(address)}`, { method: 'DELETE', headers: basic(m) })
    assert.equal((await lift(a, 'Gone@R.example')).status, 204)
    const [lifted] = await db
      .select()
      .from(suppressions)
      .where(and(eq(suppressions.memberId, a.id), eq(suppressions.address, 'gone@r.example')))
    assert.equal(lifted?.removedBy, `member:${a.did}`)
    assert.ok(lifted?.removedAt)

    const complaint = await lift(a, 'angry@r.example')
    assert.equal(complaint.status, 403)
    assert.match(
      ((await complaint.json()) as { message: string }).message,
      /^angry@r\.example complained about lista\.example's mail; only a pool operator/,
    )
    assert.equal((await lift(a, 'other@r.example')).status, 404, 'another member’s entry is not there for it')
    assert.equal((await lift(b, 'other@r.example')).status, 204)
    assert.equal((await lift(a, 'not an address')).status, 400)
  })

  it('shows the member its domains with status and warming, and the credential’s scope; one list over all its domains', async () => {
    const m = await member('twod')
    const second = await addDomain(m.id, 'second.twod.example', new Date(Date.now() - 3.5 * 86_400_000))
    const pending = await addDomain(m.id, 'pending.twod.example', null)
    await db.update(domains).set({ status: 'pending' }).where(eq(domains.id, pending.id))
    const given = await addDomain(m.id, 'given-up.twod.example')
    await db.update(domains).set({ removedAt: new Date(), removedReason: 'given up' }).where(eq(domains.id, given.id))
    await suppress(db, { memberId: m.id, address: 'bounced@r.example', reason: 'hard_bounce', domainId: second.id })

    type Me = {
      member: string
      status: string
      credential: { username: string; domain: string | null }
      domains: { domain: string; status: string; warming: { since: string | null; day: number | null } }[]
    }
    const me = (await (await fetch(base, { headers: basic(m) })).json()) as Me
    assert.equal(me.member, m.did)
    assert.equal(me.status, 'active')
    assert.deepEqual(me.credential, { username: 'twod.example', domain: 'twod.example' })
    assert.deepEqual(
      me.domains.map((d) => [d.domain, d.status, d.warming.day]),
      [
        ['twod.example', 'active', 0],
        ['second.twod.example', 'active', 3],
        ['pending.twod.example', 'pending', null],
      ],
      'the live domains, each warming from its own first day; the one given up is not among them',
    )

    // A credential for any of the member's domains opens the same member.
    const any = await credential(m.id, 'twod-any', null)
    const viaAny = (await (await fetch(base, { headers: basic(any) })).json()) as Me
    assert.deepEqual(viaAny.credential, { username: 'twod-any', domain: null })
    assert.equal(viaAny.member, m.did)

    const list = (await (await fetch(`${base}/suppressions`, { headers: basic(any) })).json()) as {
      domains: string[]
      items: { address: string; domain: string | null }[]
    }
    assert.deepEqual(list.domains, ['twod.example', 'second.twod.example', 'pending.twod.example'])
    assert.deepEqual(
      list.items.map((i) => [i.address, i.domain]),
      [['bounced@r.example', 'second.twod.example']],
    )

    // A credential scoped to a domain the member no longer holds opens nothing.
    const stale = await credential(m.id, 'given-up.twod.example', given.id)
    assert.equal((await fetch(base, { headers: basic(stale) })).status, 401)
  })

  it('bounds the password checks running at once: past the limit the answer is 429 with Retry-After', async () => {
    const m = await member('busym')
    const answers = await Promise.all(
      Array.from({ length: 12 }, () => fetch(`${base}/suppressions`, { headers: basic(m) })),
    )
    const codes = answers.map((r) => r.status)
    assert.ok(codes.includes(200), `some get through: ${codes}`)
    assert.ok(codes.includes(429), `the rest are told to retry: ${codes}`)
    const busy = answers.find((r) => r.status === 429)
    assert.equal(busy?.headers.get('retry-after'), '1')
  })
})
