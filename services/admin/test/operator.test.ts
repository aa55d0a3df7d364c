import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import {
  auditLog,
  createDb,
  type Db,
  domains,
  feedbackEvents,
  inboundMessages,
  members,
  messageRecipients,
  messages,
  quarantinedReports,
} from '@atmos/db'
import { computeReputation } from '@atmos/reputation'
import { createLogger } from '@atmos/runtime'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { eq } from 'drizzle-orm'
import { adminConfigSchema } from '../src/config.ts'
import { createContext } from '../src/context.ts'
import type { ComplaintItem } from '../src/operator/complaints.ts'
import type { InboundItem } from '../src/operator/inbound.ts'
import { AdminService } from '../src/service.ts'

// The operator API of a real admin service against the real Postgres: what fbl-ingest
// received (operator mail and its forward, quarantined reports) and aggregate figures.

const TOKEN = randomBytes(32).toString('hex')
let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string

function tokenFile(): string {
  const path = join(mkdtempSync(join(tmpdir(), 'atmos-admin-')), 'operator.token')
  writeFileSync(path, `${TOKEN}\n`, { mode: 0o600 })
  chmodSync(path, 0o600)
  return path
}

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 2 })
  const config = loadConfig(adminConfigSchema, {
    env: {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_HTTP_PORT: '0',
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_OPERATOR_TOKEN_FILE: tokenFile(),
    },
  })
  service = new AdminService(createContext(config))
  // Quiet: the context's logger writes JSON lines to stdout otherwise.
  Object.assign(service.ctx, { logger: createLogger('admin', 'silent') })
  await service.start()
  await service.whenStarted()
  base = `${service.webUrl}/api/operator`
})

after(async () => {
  await service?.destroy()
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

const auth = { authorization: `Bearer ${TOKEN}` }

/** A member holding `names` (the first activated `ageDays` ago), as the relay enrols one. */
async function member(did: string, names: string[], ageDays = 0) {
  const activatedAt = new Date(Date.now() - ageDays * 86_400_000)
  const [m] = await db
    .insert(members)
    .values({ did, status: 'active', activatedAt })
    .returning({ id: members.id, did: members.did })
  const ds = []
  for (const domain of names) {
    const [d] = await db
      .insert(domains)
      .values({ memberId: m!.id, domain, status: 'active', activatedAt })
      .returning({ id: domains.id, domain: domains.domain })
    ds.push(d!)
  }
  return { ...m!, domains: ds }
}

async function inbound(values: Partial<typeof inboundMessages.$inferInsert> & { raw: Buffer }) {
  const [row] = await db
    .insert(inboundMessages)
    .values({
      mailFrom: 'x@elsewhere.example',
      rcptTo: ['postmaster@pool.example'],
      size: values.raw.length,
      ...values,
    })
    .returning({ id: inboundMessages.id })
  return row!.id
}

describe('operator API', () => {
  it('refuses requests without the operator token, naming the scheme', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${TOKEN}` }] as Record<
      string,
      string
    >[]) {
      const res = await fetch(`${base}/inbound`, { headers })
      assert.equal(res.status, 401)
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /)
      assert.equal(((await res.json()) as { error: string }).error, 'Unauthorized')
    }
  })

  it('lists operator mail with its forward’s delivery state, and quarantined reports with the reason', async () => {
    const fwd = randomUUID()
    await db.insert(messages).values({
      id: fwd,
      memberId: null,
      envelopeFrom: 'fbl-ingest@pool.example',
      returnPath: 'b+x@bounces.pool.example',
      size: 1,
      body: Buffer.from('x'),
      expiresAt: new Date(Date.now() + 86_400_000),
    })
    await db.insert(messageRecipients).values({
      messageId: fwd,
      address: 'ops@operator.example',
      domain: 'operator.example',
      state: 'deferred',
      attempts: 2,
      lastReply: '451 4.7.1 try later',
    })
    const operatorMail = await inbound({
      raw: Buffer.from(
        'From: =?utf-8?q?J=C3=BCrgen?= <j@elsewhere.example>\r\nSubject: =?utf-8?b?w4RyZ2VyIG1pdCBldXJlbSBQb29s?=\r\n\r\nHallo.\r\n',
      ),
      kind: 'operator',
      state: 'forwarded',
      forwardedMessageId: fwd,
    })
    const bad = await inbound({ raw: Buffer.from('Subject: ???\r\n\r\ngarbage'), kind: 'dsn', state: 'quarantined' })
    await db.insert(quarantinedReports).values({ inboundId: bad, reason: 'no attribution: nothing matched' })

    const res = await fetch(`${base}/inbound?kind=operator`, { headers: auth })
    assert.equal(res.status, 200)
    const { items } = (await res.json()) as { items: InboundItem[] }
    assert.equal(items.length, 1)
    const item = items[0]!
    assert.equal(item.id, operatorMail)
    assert.equal(item.subject, 'Ärger mit eurem Pool')
    assert.equal(item.from, 'Jürgen <j@elsewhere.example>')
    assert.deepEqual(item.forward, {
      messageId: fwd,
      to: 'ops@operator.example',
      state: 'deferred',
      attempts: 2,
      lastReply: '451 4.7.1 try later',
    })
    assert.equal(item.quarantine, null)

    const q = (await (await fetch(`${base}/inbound?state=quarantined`, { headers: auth })).json()) as {
      items: InboundItem[]
    }
    assert.deepEqual(
      q.items.map((i) => [i.id, i.quarantine?.reason]),
      [[bad, 'no attribution: nothing matched']],
    )
  })

  it('pages newest first, and answers bad parameters with 400 naming them', async () => {
    const ids = []
    for (let i = 0; i < 5; i++)
      ids.push(
        await inbound({ raw: Buffer.from(`Subject: page ${i}\r\n\r\nx`), kind: 'auto_reply', state: 'processed' }),
      )
    type Page = { items: { id: number }[]; next?: number }
    const first = (await (await fetch(`${base}/inbound?kind=auto_reply&limit=2`, { headers: auth })).json()) as Page
    assert.deepEqual(
      first.items.map((i) => i.id),
      [ids[4], ids[3]],
    )
    const second = (await (
      await fetch(`${base}/inbound?kind=auto_reply&limit=2&before=${first.next}`, { headers: auth })
    ).json()) as Page
    assert.deepEqual(
      second.items.map((i) => i.id),
      [ids[2], ids[1]],
    )
    const bad = await fetch(`${base}/inbound?kind=nonsense&limit=1000`, { headers: auth })
    assert.equal(bad.status, 400)
    const body = (await bad.json()) as { error: string; message: string }
    assert.equal(body.error, 'InvalidRequest')
    assert.match(body.message, /kind: .*limit: /)
  })

  it('hands out the original byte for byte as a download, never rendered', async () => {
    const raw = Buffer.concat([Buffer.from('Subject: bytes\r\n\r\n'), Buffer.from([0xff, 0x00, 0x80, 0x0d, 0x0a])])
    const id = await inbound({ raw, kind: 'operator', state: 'processed' })
    const res = await fetch(`${base}/inbound/${id}/raw`, { headers: auth })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'message/rfc822')
    assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename="inbound-\d+\.eml"$/)
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(raw))
    assert.equal((await fetch(`${base}/inbound/999999/raw`, { headers: auth })).status, 404)
    assert.equal((await fetch(`${base}/inbound/abc/raw`, { headers: auth })).status, 400)
  })

  it('records a provider’s aggregate complaint rate for a member, which counts in its reputation', async () => {
    const m = await member('did:plc:aggregateaaaaaaaaaaaaaaaa', ['agg.example', 'agg2.example'])
    const url = `${base}/members/${encodeURIComponent(m!.did)}/aggregate-feedback`
    const day = new Date(Date.now() - 3_600_000)
    const body = {
      provider: 'Gmail',
      periodStart: new Date(day.getTime() - 86_400_000).toISOString(),
      periodEnd: day.toISOString(),
      complaintRate: 0.004,
    }
    const res = await fetch(url, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    assert.equal(res.status, 201)
    const recorded = (await res.json()) as { level: string; domains: { domain: string }[] }
    assert.equal(recorded.level, 'suspend', '0.4 % is past the 0.3 % suspension threshold')
    assert.deepEqual(
      recorded.domains.map((d) => d.domain),
      ['agg.example', 'agg2.example'],
      'the member’s reputation is over all its domains',
    )
    const rep = await computeReputation(db, m.id)
    assert.equal(rep.windows['24h'].aggregateRate, 0.004)
    const listed = (await (await fetch(url, { headers: auth })).json()) as {
      member: string
      domains: { domain: string }[]
      items: { provider: string; complaintRate: number; recordedBy: string }[]
    }
    assert.equal(listed.member, m.did)
    assert.deepEqual(
      listed.domains.map((d) => d.domain),
      ['agg.example', 'agg2.example'],
    )
    assert.deepEqual(
      listed.items.map((i) => [i.provider, i.complaintRate, i.recordedBy]),
      [['gmail', 0.004, 'operator:admin']],
    )
    const audit = await db.select().from(auditLog).where(eq(auditLog.action, 'aggregate-feedback.recorded'))
    assert.deepEqual(
      audit.map((a) => [a.actor, a.did, (a.detail as { complaintRate: number }).complaintRate]),
      [['operator:admin', m.did, 0.004]],
      'the entry is in the audit log',
    )

    const post = (b: unknown, u = url) =>
      fetch(u, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(b) })
    const wrong = await post({ ...body, complaintRate: 2, periodEnd: 'yesterday' })
    assert.equal(wrong.status, 400)
    assert.match(((await wrong.json()) as { message: string }).message, /periodEnd: .*complaintRate: /)
    const backwards = await post({ ...body, periodEnd: body.periodStart })
    assert.equal(backwards.status, 400)
    assert.match(((await backwards.json()) as { message: string }).message, /period must end after it starts/)
    const unknown = await post(
      body,
      `${base}/members/${encodeURIComponent('did:plc:nobodyaaaaaaaaaaaaaaaaaa')}/aggregate-feedback`,
    )
    assert.equal(unknown.status, 404)
    const notJson = await fetch(url, { method: 'POST', headers: auth, body: 'rate=0.1' })
    assert.equal(notJson.status, 400)
  })
})

describe('operator API: a member', () => {
  it('shows a member with its domains (each with status and warming), those it gave up or lost, and its reputation', async () => {
    const m = await member('did:plc:viewaaaaaaaaaaaaaaaaaaaa', ['view.example', 'view2.example'], 5)
    await db
      .update(domains)
      .set({ status: 'suspended', statusReason: 'complaints about this domain' })
      .where(eq(domains.id, m.domains[1]!.id))
    const [moved] = await db
      .insert(domains)
      .values({
        memberId: m.id,
        domain: 'moved.example',
        status: 'active',
        removedAt: new Date(),
        removedReason: 'moved to did:plc:otheraaaaaaaaaaaaaaaaaaa',
      })
      .returning()
    const res = await fetch(`${base}/members/${encodeURIComponent(m.did)}`, { headers: auth })
    assert.equal(res.status, 200)
    type View = { domain: string; status: string; statusReason: string | null; warming: { day: number | null } }
    const body = (await res.json()) as {
      did: string
      status: string
      domains: View[]
      removedDomains: (View & { removedAt: string; removedReason: string })[]
      reputation: { level: string }
    }
    assert.equal(body.did, m.did)
    assert.equal(body.status, 'active')
    assert.deepEqual(
      body.domains.map((d) => [d.domain, d.status, d.statusReason, d.warming.day]),
      [
        ['view.example', 'active', null, 5],
        ['view2.example', 'suspended', 'complaints about this domain', 5],
      ],
    )
    assert.deepEqual(
      body.removedDomains.map((d) => [d.domain, d.removedReason, d.removedAt === moved!.removedAt!.toISOString()]),
      [['moved.example', 'moved to did:plc:otheraaaaaaaaaaaaaaaaaaa', true]],
    )
    assert.equal(body.reputation.level, 'ok')
    assert.equal((await fetch(`${base}/members/did%3Aplc%3Anobodyaaaaaaaaaaaaaaaaaa`, { headers: auth })).status, 404)
    assert.equal((await fetch(`${base}/members/not-a-did`, { headers: auth })).status, 400)
  })
})

describe('operator API: category mismatches', () => {
  it('lists one body sent to many recipients under a transactional category, and not mail that differs per recipient', async () => {
    const m = await member('did:plc:mismatchaaaaaaaaaaaaaaaa', ['mismatch.example'])
    const send = async (bodyHash: string, n: number, category = 'password-reset') => {
      for (let i = 0; i < n; i++) {
        const id = randomUUID()
        await db.insert(messages).values({
          id,
          memberId: m.id,
          domainId: m.domains[0]!.id,
          envelopeFrom: 'noreply@mismatch.example',
          returnPath: 'b+x@bounces.pool.example',
          size: 1,
          body: Buffer.from('x'),
          expiresAt: new Date(Date.now() + 86_400_000),
          category,
          bodyHash,
        })
        await db
          .insert(messageRecipients)
          .values({ messageId: id, address: `r${i}@dest.example`, domain: 'dest.example' })
      }
    }
    await send('same-body', 5)
    await send('other-body', 2, 'login-link')
    for (let i = 0; i < 5; i++) await send(`unique-${i}`, 1)
    const res = await fetch(`${base}/category-mismatches?min=3`, { headers: auth })
    assert.equal(res.status, 200)
    const { items } = (await res.json()) as { items: Array<Record<string, unknown>> }
    const mine = items.filter((i) => i.member === m.did)
    assert.deepEqual(
      mine.map((i) => [i.domain, i.category, i.recipients]),
      [['mismatch.example', 'password-reset', 5]],
    )
    assert.equal((await fetch(`${base}/category-mismatches?min=1`, { headers: auth })).status, 400)
    assert.equal((await fetch(`${base}/category-mismatches`)).status, 401)
  })
})

describe('operator API: complaints', () => {
  it('lists complaints newest first, those that did not count with why, each linked to its report', async () => {
    const m = await member('did:plc:complaintsaaaaaaaaaaaaaa', ['complaints.example'])
    // The complained-about message, sent as the member's domain (a signed token named it).
    const sentAs = randomUUID()
    await db.insert(messages).values({
      id: sentAs,
      memberId: m.id,
      domainId: m.domains[0]!.id,
      envelopeFrom: 'noreply@complaints.example',
      returnPath: 'b+x@bounces.pool.example',
      size: 1,
      body: Buffer.from('x'),
      expiresAt: new Date(Date.now() + 86_400_000),
    })
    const report = await inbound({ raw: Buffer.from('From: x@elsewhere.example\r\n\r\nabuse\r\n'), kind: 'arf' })
    const event = (recipient: string, details: Record<string, unknown>, messageId: string = randomUUID()) =>
      db
        .insert(feedbackEvents)
        .values({
          type: 'complaint',
          memberId: m.id,
          messageId,
          inboundId: report,
          recipient,
          feedbackType: 'abuse',
          source: 'arf',
          details,
        })
        .returning({ id: feedbackEvents.id })
    const [counted] = await event('a@dest.example', { counted: true }, sentAs)
    const [forged] = await event('b@dest.example', {
      counted: false,
      notCounted: 'the report is from no configured feedback-loop provider: no DKIM signature',
    })
    const get = async (query: string) => {
      const res = await fetch(`${base}/complaints${query}`, { headers: auth })
      assert.equal(res.status, 200)
      return ((await res.json()) as { items: ComplaintItem[] }).items
    }
    const all = await get('')
    assert.deepEqual(
      all.map((i) => [i.id, i.counted, i.member, i.domain]),
      [
        [forged!.id, false, m.did, null],
        [counted!.id, true, m.did, 'complaints.example'],
      ],
    )
    const notCounted = await get('?counted=false')
    assert.deepEqual(
      notCounted.map((i) => i.id),
      [forged!.id],
    )
    assert.match(notCounted[0]!.notCounted ?? '', /no configured feedback-loop provider/)
    assert.deepEqual(
      (await get('?counted=true')).map((i) => i.id),
      [counted!.id],
    )
    const raw = await fetch(`${base}/inbound/${all[0]!.inboundId}/raw`, { headers: auth })
    assert.equal(raw.status, 200)
    const bad = await fetch(`${base}/complaints?counted=maybe&limit=0`, { headers: auth })
    assert.equal(bad.status, 400)
    assert.match(((await bad.json()) as { message: string }).message, /counted: .*limit: /)
  })
})

describe('operator API switched off', () => {
  it('answers 404 with what to configure when no token file is set', async () => {
    const config = loadConfig(adminConfigSchema, {
      env: { ATMOS_DATABASE_URL: tdb.url, ATMOS_HTTP_PORT: '0', ATMOS_ADMIN_WEB_PORT: '0' },
    })
    const off = new AdminService(createContext(config))
    Object.assign(off.ctx, { logger: createLogger('admin', 'silent') })
    await off.start()
    try {
      await off.whenStarted()
      const res = await fetch(`${off.webUrl}/api/operator/inbound`, { headers: auth })
      assert.equal(res.status, 404)
      assert.match(((await res.json()) as { message: string }).message, /admin\.operatorTokenFile/)
    } finally {
      await off.destroy()
    }
  })
})
