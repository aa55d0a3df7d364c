import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createPool, type Pool } from '@atmos/db'
import { createLogger } from '@atmos/runtime'
import { closedPort } from '@atmos/testkit'
import { Registry } from 'prom-client'
import type { AddedMember } from '../src/members/store.ts'
import { ThrottleRules } from '../src/submission/throttle.ts'
import { throttleSection } from '../src/submission/throttle-config.ts'
import { createMember, type Harness, SmtpDialog, spooled, startSubmission } from './helpers.ts'

// The throttle rules over real SMTP: an enforced spike defers the recipient that crosses it
// with 451 4.7.1 naming the rule and its figures, a rule in shadow accepts and records what
// it would have done, and a firing rule writes one row an interval however much it fires.

/** One transaction over STARTTLS + AUTH: the reply to each RCPT, and to the end of DATA when any was accepted. */
async function transaction(
  port: number,
  m: { username: string; password: string; domain: string },
  to: string[],
): Promise<{ rcpt: string[]; data: string | null }> {
  const { dialog } = await SmtpDialog.open(port)
  try {
    await dialog.send('EHLO c.example')
    await dialog.starttls()
    await dialog.send('EHLO c.example')
    assert.match(await dialog.login(m.username, m.password), /^235 /)
    assert.match(await dialog.send(`MAIL FROM:<a@${m.domain}>`), /^250 /)
    const rcpt: string[] = []
    for (const r of to) rcpt.push(await dialog.send(`RCPT TO:<${r}>`))
    if (!rcpt.some((r) => r.startsWith('250'))) return { rcpt, data: null }
    assert.match(await dialog.send('DATA'), /^354 /)
    const data = await dialog.send(`From: a@${m.domain}\r\nSubject: hello\r\n\r\nbody\r\n.`)
    return { rcpt, data }
  } finally {
    dialog.close()
  }
}

/** Spooled copies of the domain as if sent `hoursAgo`, all in one clock hour: its history. */
async function history(sql: Pool, m: AddedMember, hoursAgo: number, copies: number): Promise<void> {
  await sql`
    insert into messages (id, member_id, domain_id, envelope_from, return_path, size, body, expires_at, received_at, state)
    select gen_random_uuid(), ${m.id}, ${m.domainId}, ${`a@${m.domain}`}, 'b@bounces.pool.example', 1, '\\x00'::bytea,
           now(), date_trunc('hour', now() - make_interval(hours => ${hoursAgo})), 'done'
    from generate_series(1, ${copies})`
}

type DecisionRow = { rule: string; mode: string; action: string; domain: string; figures: Record<string, unknown> }

async function decisions(sql: Pool, domainId: number): Promise<DecisionRow[]> {
  const rows = await sql<DecisionRow[]>`
    select rule, mode, action, domain, figures from throttle_decisions where domain_id = ${domainId} order by id`
  return [...rows]
}

describe('throttle rules over SMTP submission', () => {
  let h: Harness

  before(async () => {
    h = await startSubmission({
      ATMOS_RELAY_THROTTLE_SPIKE_MODE: 'enforce',
      ATMOS_RELAY_THROTTLE_SPIKE_FLOOR: '3',
      ATMOS_RELAY_THROTTLE_SPIKE_FACTOR: '2',
      ATMOS_RELAY_THROTTLE_SPRAY_MODE: 'shadow',
      ATMOS_RELAY_THROTTLE_SPRAY_FLOOR: '4',
      ATMOS_RELAY_THROTTLE_SPRAY_MAX_DOMAINS: '100',
      ATMOS_RELAY_THROTTLE_SPRAY_MAX_RATIO: '0.5',
      // Every check reads Postgres, so that counts spooled by the previous message are seen at once.
      ATMOS_RELAY_THROTTLE_CACHE_TTL: '0',
      // One interval for the whole file, so that no test straddles two by chance.
      ATMOS_RELAY_THROTTLE_RECORD_INTERVAL: '24h',
    })
  })
  after(async () => {
    await h?.close()
  })

  it('an enforced spike defers the recipient past the limit with 451 4.7.1 naming the rule and figures; the rest go', async () => {
    const m = await createMember(h, 'spike.example', { activatedDaysAgo: 30 })
    const to = ['r1@dest.example', 'r2@dest.example', 'r3@dest.example', 'r4@dest.example', 'r5@dest.example']
    const first = await transaction(h.port, m, to)
    assert.deepEqual(
      first.rcpt.map((r) => r.slice(0, 3)),
      ['250', '250', '250', '451', '451'],
    )
    assert.equal(
      first.rcpt[3],
      '451 4.7.1 spike: spike.example sent 4 recipients in the last hour, over its limit of 3 (2 x its busiest hour in 14 days, 0; at least 3); try again later',
    )
    assert.match(first.data ?? '', /^250 /)
    const mine = (await spooled(h.sql)).filter((s) => s.domainId === m.domainId)
    assert.deepEqual(
      mine.map((s) => s.address),
      ['r1@dest.example', 'r2@dest.example', 'r3@dest.example'],
    )
    // The spooled three now count: the next message's first recipient is already over.
    const second = await transaction(h.port, m, ['r6@dest.example'])
    assert.match(second.rcpt[0] ?? '', /^451 4\.7\.1 spike: spike\.example sent 4 recipients in the last hour/)
    assert.equal(second.data, null)
    assert.equal(h.submission.metrics.refused.value({ reason: 'throttled' }), 3)
    // Three deferrals, one row: the first firing of the interval, with its figures.
    assert.deepEqual(await decisions(h.sql, m.domainId), [
      {
        rule: 'spike',
        mode: 'enforce',
        action: 'deferred',
        domain: 'spike.example',
        figures: { window: '1h', recipients: 4, peakHour: 0, historyDays: 14, factor: 2, floor: 3, limit: 3 },
      },
    ])
  })

  it("a domain's own history sets its spike limit: the 14 days before yesterday, not the last day nor older", async () => {
    const m = await createMember(h, 'steady.example', { activatedDaysAgo: 30 })
    // 10 in one hour three days ago: the limit is 2 x 10 = 20. 30 two hours ago and 40 sixteen
    // days ago are outside the history: counted, they would make the limit 60 or 80.
    await history(h.sql, m, 72, 10)
    await history(h.sql, m, 2, 30)
    await history(h.sql, m, 16 * 24, 40)
    const to = Array.from({ length: 22 }, (_, i) => `r${i}@dest.example`)
    const before = h.submission.metrics.refused.value({ reason: 'throttled' })
    const sent = await transaction(h.port, m, to)
    assert.ok(
      sent.rcpt.slice(0, 20).every((r) => r.startsWith('250')),
      sent.rcpt.join('\n'),
    )
    assert.equal(
      sent.rcpt[20],
      '451 4.7.1 spike: steady.example sent 21 recipients in the last hour, over its limit of 20 (2 x its busiest hour in 14 days, 10; at least 3); try again later',
    )
    assert.match(sent.rcpt[21] ?? '', /^451 4\.7\.1 spike: /)
    assert.equal(h.submission.metrics.refused.value({ reason: 'throttled' }) - before, 2)
    assert.deepEqual(
      (await decisions(h.sql, m.domainId)).map((d) => [d.rule, d.figures.peakHour, d.figures.limit]),
      [['spike', 10, 20]],
    )
  })

  it('spray in shadow accepts every recipient and records what it would have done, once an interval', async () => {
    const m = await createMember(h, 'spray.example', { activatedDaysAgo: 30 })
    await history(h.sql, m, 48, 100)
    const spread = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `x@${tag}${i}.example`)
    const before = h.submission.metrics.refused.value({ reason: 'throttled' })
    const first = await transaction(h.port, m, spread(6, 'a'))
    assert.ok(
      first.rcpt.every((r) => r.startsWith('250')),
      first.rcpt.join('\n'),
    )
    assert.match(first.data ?? '', /^250 /)
    const second = await transaction(h.port, m, spread(5, 'b'))
    assert.ok(second.rcpt.every((r) => r.startsWith('250')))
    // It fired at the 4th recipient and on every one after, and wrote one row.
    const rows = await decisions(h.sql, m.domainId)
    assert.deepEqual(rows, [
      {
        rule: 'spray',
        mode: 'shadow',
        action: 'would_defer',
        domain: 'spray.example',
        figures: { window: '1h', recipients: 4, domains: 4, ratio: 1, floor: 4, maxDomains: 100, maxRatio: 0.5 },
      },
    ])
    assert.equal(h.submission.metrics.refused.value({ reason: 'throttled' }), before, 'nothing deferred by spray')
    const [spool] = await h.sql<{ n: number }[]>`select count(*)::int as n from messages where domain_id = ${m.domainId}
      and received_at > now() - interval '1 hour'`
    assert.equal(spool?.n, 11)
  })

  it('recipients at one domain are no spray, however many', async () => {
    const m = await createMember(h, 'list.example', { activatedDaysAgo: 30 })
    await history(h.sql, m, 48, 100)
    const sent = await transaction(
      h.port,
      m,
      Array.from({ length: 10 }, (_, i) => `u${i}@gmail.example`),
    )
    assert.ok(sent.rcpt.every((r) => r.startsWith('250')))
    assert.deepEqual(await decisions(h.sql, m.domainId), [])
  })
})

describe('throttle figures: cache and record rate', () => {
  let h: Harness
  let m: AddedMember

  before(async () => {
    // Rules off in the server: these tests drive ThrottleRules directly against its database.
    h = await startSubmission({ ATMOS_RELAY_THROTTLE_SPIKE_MODE: 'off', ATMOS_RELAY_THROTTLE_SPRAY_MODE: 'off' })
    m = await createMember(h, 'cache.example', { activatedDaysAgo: 30 })
  })
  after(async () => {
    await h?.close()
  })

  const rules = (extra: Record<string, unknown>) =>
    new ThrottleRules({
      // The relay's own pool (drizzle's), whose parameter types differ from a bare one.
      sql: h.ctx.db.$client,
      config: throttleSection.parse({ spike: { mode: 'shadow', floor: 1 }, spray: { mode: 'off' }, ...extra }),
      logger: createLogger('relay', 'silent'),
      metrics: new Registry(),
    })
  const check = (r: ThrottleRules, now: Date, tag = 'x') =>
    r.check({
      memberId: m.id,
      domainId: m.domainId,
      domain: m.domain,
      recipientDomains: [`${tag}.example`, 'y.example'],
      now,
    })

  it('asks Postgres once per domain per cacheTtl however many checks arrive, concurrent ones included', async () => {
    const r = rules({ cacheTtl: 60_000 })
    const now = new Date()
    const results = await Promise.all(Array.from({ length: 50 }, () => check(r, now)))
    assert.equal(r.queries, 1)
    assert.ok(results.every((x) => x.decisions[0]?.rule === 'spike' && x.defer === null))
    await check(r, new Date(now.getTime() + 30_000))
    assert.equal(r.queries, 1)
    await check(r, new Date(now.getTime() + 61_000))
    assert.equal(r.queries, 2)
  })

  it('records at most one row per domain, rule and mode an interval, across replicas too', async () => {
    await h.sql`delete from throttle_decisions`
    const a = rules({ recordInterval: 600_000 })
    const b = rules({ recordInterval: 600_000 })
    // Aligned to an interval's start so that the checks below all fall in one.
    const start = new Date(Math.ceil(Date.now() / 600_000) * 600_000)
    for (let i = 0; i < 20; i++) await check(i % 2 ? a : b, new Date(start.getTime() + i * 1000))
    const count = async () =>
      (
        await h.sql<{ n: number }[]>`select count(*)::int as n from throttle_decisions where domain_id = ${m.domainId}`
      )[0]?.n
    assert.equal(await count(), 1)
    // The next interval gets its own row, with that moment's figures.
    await check(a, new Date(start.getTime() + 600_000))
    assert.equal(await count(), 2)
  })

  it('lets recipients through when the figures cannot be read', async () => {
    const down = createPool({ url: `postgres://root@127.0.0.1:${await closedPort()}/none`, connectTimeout: 1000 })
    try {
      const r = new ThrottleRules({
        sql: down,
        config: throttleSection.parse({ spike: { mode: 'enforce', floor: 1 } }),
        logger: createLogger('relay', 'silent'),
        metrics: new Registry(),
      })
      const result = await r.check({
        memberId: m.id,
        domainId: m.domainId,
        domain: m.domain,
        recipientDomains: ['x.example', 'y.example'],
      })
      assert.deepEqual(result, { defer: null, decisions: [] })
    } finally {
      await down.end({ timeout: 1 })
    }
  })
})
