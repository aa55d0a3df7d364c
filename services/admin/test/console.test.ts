import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '@atmos/config'
import {
  auditLog,
  createDb,
  type Db,
  deliveryAttempts,
  feedbackEvents,
  messageRecipients,
  messages,
  webSessions,
} from '@atmos/db'
import { addMember } from '@atmos/enrolment'
import { memberStatusChanged, TypedQueue } from '@atmos/queues'
import { statusJobId, suppress } from '@atmos/reputation'
import { createLogger } from '@atmos/runtime'
import { createKeyringFile, type Keyring, loadKeyring } from '@atmos/secrets'
import {
  closedPort,
  createTestDatabase,
  deletePrefix,
  type TestDatabase,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { and, desc, eq, sql } from 'drizzle-orm'
import { adminConfigSchema } from '../src/config.ts'
import { auditSql } from '../src/console/audit.ts'
import { poolAttemptsSql, poolComplaintsSql, siteRatesSql } from '../src/console/pool.ts'
import { createContext } from '../src/context.ts'
import { AdminService } from '../src/service.ts'
import { csrfTokenFor } from '../src/web/session.ts'

// The operator console over HTTP against a real admin, Postgres and Redis: who may open it
// (every route, GET and POST), the pool's figures from seeded attempts, the members list and a
// member's page, suspend / reinstate / lift with their confirmation, CSRF and audit rows, and
// the audit log's filters.

const OPERATOR = 'did:plc:operatoroperatoroperator'
const prefix = testRedisPrefix('console')

let tdb: TestDatabase
let db: Db
let service: AdminService
let base: string
let keyring: Keyring
let redis: ReturnType<typeof testRedis>
let queue: TypedQueue<typeof memberStatusChanged>

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

const get = (s: Session | null, path: string) =>
  fetch(`${base}${path}`, { headers: s ? { cookie: s.cookie } : {}, redirect: 'manual' })

function post(s: Session | null, path: string, fields: Record<string, string>, opts: { csrf?: boolean } = {}) {
  const body = new URLSearchParams(opts.csrf === false || !s ? fields : { _csrf: s.csrf, ...fields })
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { ...(s ? { cookie: s.cookie } : {}), 'content-type': 'application/x-www-form-urlencoded' },
    body,
    redirect: 'manual',
  })
}

const statusOf = async (did: string) =>
  (await db.execute<{ status: string }>(sql`select status from members where did = ${did}`))[0]!.status

/** A member past the complaint threshold: 150 delivered recipients over the last hours, 4 complaints. */
async function seedBadSender(): Promise<{ id: number; did: string }> {
  const did = `did:plc:${'badsender'.padEnd(24, 'a')}`
  const m = await addMember(db.$client, keyring, {
    did,
    domain: 'bad.example',
    maxDomains: 2,
    actor: 'operator:test',
  })
  await db.execute(
    sql`update members set status = 'active', activated_at = now() - interval '2 days' where id = ${m.id}`,
  )
  await db.execute(sql`update domains set activated_at = now() - interval '2 days' where member_id = ${m.id}`)
  const at = new Date(Date.now() - 3_600_000)
  const ids = Array.from({ length: 150 }, () => randomUUID())
  await db.insert(messages).values(
    ids.map((id) => ({
      id,
      memberId: m.id,
      domainId: m.domainId,
      envelopeFrom: 'news@bad.example',
      returnPath: 'b+x@bounces.example',
      size: 10,
      body: Buffer.from('x'),
      expiresAt: new Date(Date.now() + 86_400_000),
      receivedAt: at,
    })),
  )
  const recipients = await db
    .insert(messageRecipients)
    .values(
      ids.map((messageId, i) => ({
        messageId,
        address: `r${i}@gmail.example`,
        domain: 'gmail.example',
        state: 'delivered' as const,
        // After the enrolment: the reputation's windows start at the member's last activation.
        updatedAt: new Date(),
      })),
    )
    .returning({ id: messageRecipients.id, messageId: messageRecipients.messageId })
  // Gmail took 140 (10 of them deferred once first); Outlook refused 10.
  await db.insert(deliveryAttempts).values(
    recipients.flatMap((r, i): Array<typeof deliveryAttempts.$inferInsert> => {
      const host = i < 140 ? 'gmail-smtp-in.l.google.com' : 'example-com.mail.protection.outlook.com'
      const done = { recipientId: r.id, messageId: r.messageId, startedAt: at, mxHost: host }
      if (i >= 140) return [{ ...done, outcome: 'failed' as const, replyCode: 550 }]
      if (i < 10)
        return [
          { ...done, outcome: 'deferred' as const, replyCode: 421 },
          { ...done, outcome: 'delivered' as const },
        ]
      return [{ ...done, outcome: 'delivered' as const }]
    }),
  )
  await db.insert(feedbackEvents).values(
    [0, 1, 2, 3].map((i) => ({
      type: 'complaint' as const,
      memberId: m.id,
      messageId: ids[i]!,
      recipient: `r${i}@gmail.example`,
      source: 'arf',
    })),
  )
  await suppress(db, { memberId: m.id, address: 'r0@gmail.example', reason: 'complaint' })
  return { id: m.id, did }
}

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
  const dir = mkdtempSync(join(tmpdir(), 'atmos-console-'))
  createKeyringFile(join(dir, 'kek'))
  createKeyringFile(join(dir, 'relay-kek'))
  keyring = loadKeyring(join(dir, 'relay-kek'))
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
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

describe('operator console', () => {
  let bad: { id: number; did: string }
  let op: Session
  before(async () => {
    bad = await seedBadSender()
    op = await session(OPERATOR)
  })

  it('answers every route, GET and POST: signed out 303 to sign-in, a non-operator 403, and changes nothing', async () => {
    const member = await session(bad.did)
    const path = `/operator/members/${encodeURIComponent(bad.did)}`
    const gets = [
      '/operator',
      '/operator?window=30d',
      '/operator/members',
      '/operator/members?q=bad',
      path,
      `${path}/messages`,
      `${path}/status?to=suspended`,
      `${path}/suppressions/lift?address=r0%40gmail.example`,
      `${path}/domains/bad.example/status?to=suspended`,
      '/operator/audit',
      '/operator/nowhere',
    ]
    const posts: Array<[string, Record<string, string>]> = [
      [`${path}/status`, { to: 'suspended', reason: 'x', confirm: 'yes' }],
      [`${path}/suppressions/lift`, { address: 'r0@gmail.example', reason: 'x', confirm: 'yes' }],
      [`${path}/domains/bad.example/status`, { to: 'suspended', reason: 'x', confirm: 'yes' }],
      ['/operator', {}],
      ['/operator/audit', {}],
    ]
    for (const p of gets) {
      const out = await get(null, p)
      assert.equal(out.status, 303, `GET ${p} signed out`)
      assert.equal(out.headers.get('location'), '/')
      const res = await get(member, p)
      assert.equal(res.status, 403, `GET ${p} as a member`)
      assert.match(await res.text(), /not one of this pool(&#39;|')s operators/)
    }
    for (const [p, fields] of posts) {
      // Signed out, a POST without a session token is refused by the CSRF check before the route (403).
      const out = await post(null, p, fields)
      assert.equal(out.status, 403, `POST ${p} signed out`)
      const res = await post(member, p, fields)
      assert.equal(res.status, 403, `POST ${p} as a member`)
    }
    assert.equal(await statusOf(bad.did), 'active')
    const [d] = await db.execute<{ status: string }>(sql`select status from domains where domain = 'bad.example'`)
    assert.equal(d!.status, 'active')
    const [s] = await db.execute<{ n: number }>(
      sql`select count(*)::int as n from suppressions where member_id = ${bad.id} and removed_at is null`,
    )
    assert.equal(Number(s!.n), 1)
  })

  it('shows the pool: the chart, rates by site, the queues and the label head', async () => {
    const res = await get(op, '/operator')
    assert.equal(res.status, 200)
    const html = await res.text()
    assert.match(html, /<svg[^>]*class="chart"/)
    assert.match(html, /160 attempts: 140 delivered, 10 deferred, 10 bounced; 4 complaints/)
    // gmail: 150 attempts, 10 deferred (6.7 %), none refused; outlook: 10 refused of 10.
    assert.match(html, /<th scope="row">gmail<\/th><td>150<\/td><td>6\.7 %<\/td><td>0\.0 %<\/td>/)
    assert.match(html, /<th scope="row">outlook<\/th><td>10<\/td><td>0\.0 %<\/td><td>100\.0 %<\/td>/)
    assert.match(html, /<th scope="row">deliver-message<\/th>/)
    assert.match(html, /The label stream is empty/)
    assert.equal((await get(op, '/operator?window=1y')).status, 400)
  })

  it('lists members by domain, handle or DID with their level, and escapes what members wrote', async () => {
    await db.execute(sql`update members set handle = ${'<b>bad</b>.example'} where id = ${bad.id}`)
    const res = await get(op, '/operator/members?q=bad.ex')
    assert.equal(res.status, 200)
    const html = await res.text()
    assert.ok(html.includes(bad.did))
    assert.ok(html.includes('&lt;b&gt;bad&lt;/b&gt;.example'))
    assert.ok(!html.includes('<b>bad</b>'))
    assert.match(html, /<td>suspend<\/td>/, 'past the complaint threshold')
    const byDid = await (await get(op, `/operator/members?q=${encodeURIComponent(bad.did)}`)).text()
    assert.ok(byDid.includes(bad.did))
    // LIKE's wildcards stand for themselves.
    const wild = await (await get(op, '/operator/members?q=%25')).text()
    assert.match(wild, /No member matches/)
  })

  it('suspends with a confirmed reason (CSRF-checked), records it, tells the labeler, then reinstates', async () => {
    const path = `/operator/members/${encodeURIComponent(bad.did)}`
    const confirm = await get(op, `${path}/status?to=suspended`)
    assert.equal(confirm.status, 200)
    assert.match(await confirm.text(), /name="confirm" value="yes"/)
    assert.equal((await post(op, `${path}/status`, { to: 'suspended', reason: '', confirm: 'yes' })).status, 400)
    assert.equal((await post(op, `${path}/status`, { to: 'suspended', reason: 'complaints' })).status, 400)
    const forged = await post(op, `${path}/status`, { to: 'suspended', reason: 'x', confirm: 'yes' }, { csrf: false })
    assert.equal(forged.status, 403)
    assert.equal(await statusOf(bad.did), 'active')

    const done = await post(op, `${path}/status`, { to: 'suspended', reason: 'complaints past 0.3 %', confirm: 'yes' })
    assert.equal(done.status, 303)
    assert.equal(done.headers.get('location'), `${path}?done=suspended`)
    assert.equal(await statusOf(bad.did), 'suspended')
    const [change] = await db.execute<{ id: string; actor: string; reason: string }>(
      sql`select id::text, actor, reason from member_status_changes where member_id = ${bad.id} order by id desc limit 1`,
    )
    assert.equal(change!.actor, `admin:${OPERATOR}`)
    assert.equal(change!.reason, 'complaints past 0.3 %')
    const job = await queue.queue.getJob(statusJobId(Number(change!.id)))
    assert.equal(job?.data.status, 'suspended')
    const page = await (await get(op, `${path}?done=suspended`)).text()
    assert.match(page, /The member is suspended/)
    assert.match(page, /complaints past 0\.3 %/)

    const back = await post(op, `${path}/status`, { to: 'active', reason: 'member cleaned its list', confirm: 'yes' })
    assert.equal(back.status, 303)
    assert.equal(await statusOf(bad.did), 'active')
    const actions = await db
      .select({ action: auditLog.action, actor: auditLog.actor })
      .from(auditLog)
      .where(eq(auditLog.did, bad.did))
      .orderBy(desc(auditLog.id))
    assert.deepEqual(actions.slice(0, 2), [
      { action: 'member.reinstated', actor: `admin:${OPERATOR}` },
      { action: 'member.suspended', actor: `admin:${OPERATOR}` },
    ])
  })

  it('lifts a complaint suppression with a reason and an audit row', async () => {
    const path = `/operator/members/${encodeURIComponent(bad.did)}`
    const confirm = await get(op, `${path}/suppressions/lift?address=R0%40gmail.example`)
    assert.equal(confirm.status, 200)
    assert.match(await confirm.text(), /for: complaint/)
    assert.equal((await get(op, `${path}/suppressions/lift?address=nobody%40x.example`)).status, 404)
    const res = await post(op, `${path}/suppressions/lift`, {
      address: 'r0@gmail.example',
      reason: 'recipient asked to be mailed again',
      confirm: 'yes',
    })
    assert.equal(res.status, 303)
    const [s] = await db.execute<{ removed_by: string }>(
      sql`select removed_by from suppressions where member_id = ${bad.id} and address = 'r0@gmail.example'`,
    )
    assert.equal(s!.removed_by, `admin:${OPERATOR}`)
    const [a] = await db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.did, bad.did), eq(auditLog.action, 'suppression.lifted')))
    assert.equal(a?.actor, `admin:${OPERATOR}`)
    assert.equal((a!.detail as { reason: string }).reason, 'recipient asked to be mailed again')
    assert.equal((a!.detail as { suppressed: string }).suppressed, 'complaint')
    // Lifted once: a second lift is a 404, not a second audit row.
    const again = await post(op, `${path}/suppressions/lift`, {
      address: 'r0@gmail.example',
      reason: 'x',
      confirm: 'yes',
    })
    assert.equal(again.status, 404)
  })

  it("suspends and reinstates one of the member's domains; another member's domain is 404", async () => {
    const path = `/operator/members/${encodeURIComponent(bad.did)}`
    const domainStatus = async () =>
      (await db.execute<{ status: string }>(sql`select status from domains where domain = 'bad.example'`))[0]!.status
    assert.equal((await get(op, `${path}/domains/bad.example/status?to=suspended`)).status, 200)
    assert.equal((await post(op, `${path}/domains/bad.example/status`, { to: 'suspended', reason: '' })).status, 400)
    const done = await post(op, `${path}/domains/bad.example/status`, {
      to: 'suspended',
      reason: 'this domain alone sent the spam',
      confirm: 'yes',
    })
    assert.equal(done.status, 303)
    assert.equal(await domainStatus(), 'suspended')
    assert.equal(await statusOf(bad.did), 'active', 'the member stays active')
    const [a] = await db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.did, bad.did), eq(auditLog.action, 'domain.suspended')))
    assert.equal(a?.actor, `admin:${OPERATOR}`)
    assert.equal(a?.domain, 'bad.example')
    const back = await post(op, `${path}/domains/bad.example/status`, { to: 'active', reason: 'fixed', confirm: 'yes' })
    assert.equal(back.status, 303)
    assert.equal(await domainStatus(), 'active')
    const other = await addMember(db.$client, keyring, {
      did: `did:plc:${'othermember'.padEnd(24, 'a')}`,
      domain: 'other.example',
      maxDomains: 1,
      actor: 'operator:test',
    })
    assert.ok(other.id)
    const wrong = await post(op, `${path}/domains/other.example/status`, {
      to: 'suspended',
      reason: 'x',
      confirm: 'yes',
    })
    assert.equal(wrong.status, 404)
    const [o] = await db.execute<{ status: string }>(sql`select status from domains where domain = 'other.example'`)
    assert.equal(o!.status, 'active')
  })

  it("shows the status events waiting for the labeler in the queues' depths", async () => {
    // The suspensions above enqueued member-status-changed jobs, and no labeler consumes them here.
    const html = await (await get(op, '/operator')).text()
    const row = /<th scope="row">member-status-changed<\/th><td>(\d+)<\/td>.*?<\/tr>/.exec(html)
    assert.ok(row, 'the queue has a row')
    assert.ok(Number(row[1]) >= 2, `waiting: ${row[1]}`)
    assert.match(row[0], /<time datetime=/, 'the oldest waiting job has a time')
  })

  it('filters the audit log by actor, member and action', async () => {
    const byAction = await (await get(op, '/operator/audit?action=member.suspended')).text()
    assert.ok(byAction.includes('complaints past 0.3 %'))
    assert.ok(!byAction.includes('member.reinstated'))
    const byActor = await (await get(op, `/operator/audit?actor=${encodeURIComponent(`admin:${OPERATOR}`)}`)).text()
    assert.ok(byActor.includes('suppression.lifted'))
    assert.ok(!byActor.includes('operator:test'), 'the enrolment by another actor is filtered out')
    const byDid = await (await get(op, `/operator/audit?did=${encodeURIComponent(bad.did)}`)).text()
    assert.ok(byDid.includes('member.reinstated'))
    const none = await (await get(op, '/operator/audit?did=did%3Aplc%3Anobody')).text()
    assert.match(none, /No entry matches/)
  })

  it("shows a member's page with its history and its message log; an unknown DID is 404", async () => {
    const path = `/operator/members/${encodeURIComponent(bad.did)}`
    const page = await (await get(op, path)).text()
    assert.match(page, /bad\.example/)
    assert.match(page, /member cleaned its list/)
    assert.match(page, /Recent feedback events/)
    const log = await get(op, `${path}/messages`)
    assert.equal(log.status, 200)
    assert.match(await log.text(), /r149@gmail\.example/)
    assert.equal((await get(op, '/operator/members/did%3Aplc%3Anobodynobodynobody')).status, 404)
    assert.equal((await get(op, '/operator/members/not-a-did')).status, 404)
  })
})

describe('the console statements are served by indexes', () => {
  it('reads the pool and the audit log through index ranges, never a whole table', async () => {
    const from = new Date(Date.now() - 30 * 86_400_000)
    const until = new Date().toISOString()
    const statements: Array<[string, ReturnType<typeof auditSql>, RegExp]> = [
      ['attempts', poolAttemptsSql(from, until, 'day'), /delivery_attempts_started_idx/],
      ['complaints', poolComplaintsSql(from, until, 'day'), /feedback_events_type_at_idx/],
      ['sites', siteRatesSql(from.toISOString()), /delivery_attempts_started_idx/],
      ['audit by actor', auditSql({ actor: 'admin:did:plc:x' }), /audit_log_actor_idx/],
      ['audit by member', auditSql({ did: 'did:plc:x' }), /audit_log_did_idx/],
      ['audit by action', auditSql({ action: 'member.suspended' }), /audit_log_action_idx/],
    ]
    // The test's tables are small, where a sequential scan is cheapest: with it priced out the
    // planner shows whether an index can serve the statement at all.
    for (const [name, statement, index] of statements) {
      const plan = await db.transaction(async (tx) => {
        await tx.execute(sql`set local enable_seqscan = off`)
        const rows = await tx.execute<{ 'QUERY PLAN': string }>(sql`explain ${statement}`)
        return rows.map((r) => r['QUERY PLAN']).join('\n')
      })
      assert.match(plan, index, `${name}: ${plan}`)
      assert.doesNotMatch(plan, /Seq Scan/, `${name}: ${plan}`)
    }
  })
})
