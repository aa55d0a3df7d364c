import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { createDb, type Db, domains, members, type RecipientState } from '@atmos/db'
// The relay's own cap rule, as the page will bind it (see standing.ts: it belongs in a shared package).
import { dailyCapFor } from '@atmos/enrolment'
import { recordFeedbackEvent, suppress } from '@atmos/reputation'
import { createTestDatabase, type TestDatabase } from '@atmos/testkit'
import { sql } from 'drizzle-orm'
import { figuresSql, memberFigures, NotMemberDomainError, windowBounds } from '../src/account/figures.ts'
import {
  LogQueryError,
  likePrefix,
  messageLog,
  messageLogSql,
  parseSearch,
  readLogRequest,
} from '../src/account/message-log.ts'
import { accountStanding, type CapRule } from '../src/account/standing.ts'
import { figuresFragment, messageLogFragment, standingFragment } from '../src/account/views.ts'

// The member's account over real Postgres: rows written the way the relay (spool, delivery)
// and fbl-ingest (feedback events through @atmos/reputation) write them.

let tdb: TestDatabase
let db: Db

const MIN = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000

type Member = { id: number; did: string }

async function member(tag: string): Promise<Member> {
  const [m] = await db
    .insert(members)
    .values({ did: `did:plc:${tag.padEnd(24, 'a')}`, status: 'active', activatedAt: new Date(Date.now() - 30 * DAY) })
    .returning({ id: members.id, did: members.did })
  return m!
}

async function domain(m: Member, name: string, opts: { activatedAt?: Date | null; removed?: boolean } = {}) {
  const [d] = await db
    .insert(domains)
    .values({
      memberId: m.id,
      domain: name,
      status: 'active',
      activatedAt: opts.activatedAt === undefined ? new Date(Date.now() - 30 * DAY) : opts.activatedAt,
      ...(opts.removed ? { removedAt: new Date(), removedReason: 'given up' } : {}),
    })
    .returning({ id: domains.id, domain: domains.domain })
  return d!
}

type Attempt = { outcome: 'delivered' | 'deferred' | 'failed'; reply?: string; at?: Date }
type Rcpt = { address: string; state: RecipientState; attempts?: Attempt[]; lastReply?: string }

/**
 * A message as the relay's submission spool writes it (one copy a recipient: one message
 * row per recipient), then its recipient's state and attempts as delivery leaves them.
 */
async function message(
  m: Member,
  d: { id: number; domain: string },
  at: Date,
  rcpt: Rcpt,
  opts: { messageIdHeader?: string; category?: string } = {},
): Promise<{ id: string; recipientId: number }> {
  const id = randomUUID()
  await db.execute(sql`
    insert into messages (id, member_id, domain_id, envelope_from, return_path, message_id_header, size, body,
                          expires_at, received_at, state, category)
    values (${id}, ${m.id}, ${d.id}, ${`news@${d.domain}`}, ${`b+${id}@pool.example`},
            ${opts.messageIdHeader ?? `<${id}@${d.domain}>`}, 3, '\\x616263'::bytea,
            ${new Date(at.getTime() + 3 * DAY).toISOString()}::timestamptz, ${at.toISOString()}::timestamptz,
            ${rcpt.state === 'queued' || rcpt.state === 'deferred' ? 'queued' : 'done'}, ${opts.category ?? null})`)
  const attempts = rcpt.attempts ?? []
  const [r] = await db.execute<{ id: string }>(sql`
    insert into message_recipients (message_id, address, domain, state, attempts, last_reply, updated_at, next_attempt_at)
    values (${id}, ${rcpt.address}, ${rcpt.address.split('@')[1]!.toLowerCase()}, ${rcpt.state}, ${attempts.length},
            ${rcpt.lastReply ?? attempts.at(-1)?.reply ?? null}, ${at.toISOString()}::timestamptz,
            ${rcpt.state === 'deferred' ? new Date(Date.now() + HOUR).toISOString() : null}::timestamptz)
    returning id::text`)
  const recipientId = Number(r!.id)
  for (const [i, a] of attempts.entries()) {
    await db.execute(sql`
      insert into delivery_attempts (recipient_id, message_id, started_at, duration_ms, mx_host, reply_code, reply, outcome)
      values (${recipientId}, ${id}, ${(a.at ?? new Date(at.getTime() + (i + 1) * MIN)).toISOString()}::timestamptz, 120,
              'mx.r.example', ${a.outcome === 'delivered' ? 250 : a.outcome === 'deferred' ? 451 : 550},
              ${a.reply ?? a.outcome}, ${a.outcome})`)
  }
  return { id, recipientId }
}

const delivered: Attempt[] = [{ outcome: 'delivered', reply: '250 2.0.0 OK queued' }]

before(async () => {
  tdb = await createTestDatabase()
  db = createDb({ url: tdb.url, poolMax: 4 })
})

after(async () => {
  await db?.$client.end({ timeout: 5 })
  await tdb?.drop()
})

describe('account figures', () => {
  let a: Member
  let b: Member
  const now = new Date()
  const ago = (ms: number) => new Date(now.getTime() - ms)

  before(async () => {
    a = await member('figa')
    b = await member('figb')
    const a1 = await domain(a, 'a1.example')
    const a2 = await domain(a, 'a2.example')
    await domain(a, 'a4.example')
    const a3 = await domain(a, 'a3.example', { removed: true })
    const b1 = await domain(b, 'b1.example')

    // a1, the last 24 hours.
    await message(a, a1, ago(10 * MIN), { address: 'x1@r.example', state: 'delivered', attempts: delivered })
    await message(a, a1, ago(10 * MIN), {
      address: 'x2@r.example',
      state: 'deferred',
      attempts: [{ outcome: 'deferred' }, { outcome: 'deferred', reply: '451 4.7.1 greylisted' }],
    })
    await message(a, a1, ago(2 * HOUR), {
      address: 'x3@r.example',
      state: 'delivered',
      attempts: [{ outcome: 'deferred' }, ...delivered],
    })
    const bounced = await message(a, a1, ago(2 * HOUR), {
      address: 'X4@R.example',
      state: 'bounced',
      attempts: [{ outcome: 'failed', reply: '550 5.1.1 no such user' }],
    })
    // The relay records its own 5xx as a hard bounce (recordBounce → recordFeedbackEvent).
    await recordFeedbackEvent(db, {
      type: 'hard_bounce',
      memberId: a.id,
      messageId: bounced.id,
      recipient: 'X4@R.example',
      status: '5.1.1',
      replyCode: 550,
      reasonClass: 'userunknown',
      source: 'delivery',
    })
    await message(a, a1, ago(1 * HOUR), {
      address: 'x5@r.example',
      state: 'failed',
      lastReply: 'not delivered: the recipient is on the member’s suppression list',
    })
    await message(a, a1, ago(1 * HOUR), { address: 'x6@r.example', state: 'queued' })
    // a2: delivered, then a DSN (fbl-ingest) says it bounced; delivered and complained about.
    const dsn = await message(a, a2, ago(5 * HOUR), {
      address: 'y1@r.example',
      state: 'delivered',
      attempts: delivered,
    })
    await recordFeedbackEvent(db, {
      type: 'hard_bounce',
      memberId: a.id,
      messageId: dsn.id,
      recipient: 'y1@r.example',
      status: '5.2.1',
      reasonClass: 'mailbox_disabled',
      source: 'dsn',
    })
    const arf = await message(a, a2, ago(5 * HOUR), {
      address: 'y2@r.example',
      state: 'delivered',
      attempts: delivered,
    })
    await recordFeedbackEvent(db, {
      type: 'complaint',
      memberId: a.id,
      messageId: arf.id,
      recipient: null,
      feedbackType: 'abuse',
      source: 'arf',
    })
    // A complaint from a reporter that is not a configured feedback loop counts for nothing.
    const uncounted = await message(a, a2, ago(5 * HOUR), {
      address: 'y3@r.example',
      state: 'delivered',
      attempts: delivered,
    })
    await recordFeedbackEvent(db, {
      type: 'complaint',
      memberId: a.id,
      messageId: uncounted.id,
      recipient: 'y3@r.example',
      source: 'arf',
      details: { counted: false },
    })
    // A complaint tied to no message: in the totals' note, in no bucket.
    await recordFeedbackEvent(db, { type: 'complaint', memberId: a.id, source: 'arf', occurredAt: ago(HOUR) })
    // a3, given up since: its mail of the day still counts, under its name.
    await message(a, a3, ago(3 * HOUR), { address: 'z1@r.example', state: 'delivered', attempts: delivered })
    // Older: in 7 days, in 30 days, and past 30 days.
    await message(a, a2, ago(3 * DAY), { address: 'y4@r.example', state: 'delivered', attempts: delivered })
    await message(a, a1, ago(20 * DAY), { address: 'x7@r.example', state: 'expired' })
    await message(a, a1, ago(40 * DAY), { address: 'x8@r.example', state: 'delivered', attempts: delivered })

    // Another member's mail, with its own bounce and complaint: none of it is a's.
    for (const at of [ago(10 * MIN), ago(2 * HOUR), ago(3 * DAY)]) {
      const o = await message(b, b1, at, { address: 'x1@r.example', state: 'delivered', attempts: delivered })
      await recordFeedbackEvent(db, {
        type: 'complaint',
        memberId: b.id,
        messageId: o.id,
        recipient: 'x1@r.example',
        source: 'arf',
      })
    }
    await message(b, b1, ago(HOUR), { address: 'x9@r.example', state: 'deferred', attempts: [{ outcome: 'deferred' }] })
    await recordFeedbackEvent(db, { type: 'complaint', memberId: b.id, source: 'arf', occurredAt: ago(HOUR) })
  })

  it('counts the member’s recipients over 24 hours by outcome, and nobody else’s', async () => {
    const f = await memberFigures(db, a.id, '24h', { now })
    assert.deepEqual(f.member.total, {
      sent: 10,
      delivered: 5, // x1, x3, y2 (complained), y3, z1; not y1 (bounced by DSN)
      deferred: 1,
      deferralAttempts: 3,
      bounced: 2, // x4 at the MX, y1 by DSN
      queued: 1,
      failed: 1,
      complained: 1,
    })
    const t = f.member.total
    assert.equal(t.delivered + t.deferred + t.bounced + t.queued + t.failed, t.sent)
    assert.equal(f.unattributedComplaints, 1)
  })

  it('splits by domain: live ones first (also with nothing sent), a removed one that sent, never another’s', async () => {
    const f = await memberFigures(db, a.id, '24h', { now })
    assert.deepEqual(
      f.domains.map((d) => [d.domain, d.live, d.series.total.sent, d.series.total.bounced, d.series.total.complained]),
      [
        ['a1.example', true, 6, 1, 0],
        ['a2.example', true, 3, 1, 1],
        ['a4.example', true, 0, 0, 0],
        ['a3.example', false, 1, 0, 0],
      ],
    )
    const only = await memberFigures(db, a.id, '24h', { now, domain: 'A2.example' })
    assert.equal(only.member.total.sent, 3)
    assert.equal(only.unattributedComplaints, 0)
    assert.deepEqual(
      only.domains.map((d) => d.domain),
      ['a2.example'],
    )
    await assert.rejects(memberFigures(db, a.id, '24h', { now, domain: 'b1.example' }), NotMemberDomainError)
    await assert.rejects(memberFigures(db, a.id, '24h', { now, domain: 'nobody.example' }), NotMemberDomainError)
  })

  it('buckets cover the window: 24 hours, 7 and 30 days, each bucket where its mail was accepted', async () => {
    const day = await memberFigures(db, a.id, '24h', { now })
    assert.equal(day.member.buckets.length, 24)
    assert.equal(day.from.getTime() % HOUR, 0)
    assert.ok(now.getTime() - day.from.getTime() > 23 * HOUR && now.getTime() - day.from.getTime() <= 24 * HOUR)
    for (const [i, bk] of day.member.buckets.entries()) assert.equal(bk.start.getTime(), day.from.getTime() + i * HOUR)
    const at = (t: Date) => Math.floor((t.getTime() - day.from.getTime()) / HOUR)
    assert.equal(day.member.buckets[at(ago(5 * HOUR))]!.counts.sent, 3)
    assert.equal(day.member.buckets[at(ago(5 * HOUR))]!.counts.complained, 1)
    assert.equal(
      day.member.buckets.reduce((n, bk) => n + bk.counts.sent, 0),
      day.member.total.sent,
    )

    const week = await memberFigures(db, a.id, '7d', { now })
    assert.equal(week.member.buckets.length, 7)
    assert.equal(week.from.getTime() % DAY, 0)
    assert.equal(week.member.total.sent, 11)
    assert.equal(
      week.member.buckets[6 - Math.floor(now.getTime() / DAY) + Math.floor(ago(3 * DAY).getTime() / DAY)]!.counts.sent,
      1,
    )

    const month = await memberFigures(db, a.id, '30d', { now })
    assert.equal(month.member.buckets.length, 30)
    assert.equal(month.member.total.sent, 12)
    assert.equal(month.member.total.bounced, 3) // x7 expired
    assert.equal(windowBounds('30d', now).from.getTime(), month.from.getTime())
  })

  it('reads through the indexes on a busy pool: no scan of all messages, recipients, attempts or events', async () => {
    // A pool where this member sends a good share of a week's mail (the case where the
    // planner, left alone, hashes every recipient of the pool: measured at 325k messages).
    const heavy = await member('figheavy')
    const other = await member('figother')
    const hd = await domain(heavy, 'heavy.example')
    const od = await domain(other, 'other.example')
    for (const [m, d, n] of [
      [heavy, hd, 4000],
      [other, od, 40000],
    ] as const) {
      await db.execute(sql`
        with msg as (
          insert into messages (member_id, domain_id, envelope_from, return_path, size, body, expires_at, received_at, state)
          select ${m.id}, ${d.id}, 'x@' || ${d.domain}, 'b@pool.example', 1, '\\x00'::bytea, now(),
                 now() - (g * interval '1 minute') * (7 * 1440 / ${n}::float8), 'done'
          from generate_series(1, ${n}) g
          returning id)
        , rcpt as (
          insert into message_recipients (message_id, address, domain, state, attempts)
          select id, 'r@r.example', 'r.example', 'delivered', 1 from msg
          returning id, message_id)
        , att as (
          insert into delivery_attempts (recipient_id, message_id, outcome, reply)
          select id, message_id, 'delivered', '250 ok' from rcpt)
        insert into feedback_events (type, member_id, message_id, recipient, source)
        select 'complaint', ${m.id}, message_id, 'r@r.example', 'arf' from rcpt where id % 20 = 0`)
    }
    await db.execute(sql`analyze`)
    for (const window of ['7d', '30d'] as const) {
      const { from, to, step } = windowBounds(window, now)
      for (const statement of [
        figuresSql({ memberId: heavy.id, from, to, step }),
        messageLogSql(
          heavy.id,
          { limit: 50, search: { field: 'recipient', value: 'nobody@r.example', prefix: false } },
          undefined,
          now,
        ),
        messageLogSql(heavy.id, { limit: 50 }, undefined, now),
      ]) {
        const rows = await db.execute<{ 'QUERY PLAN': string }>(sql`explain ${statement}`)
        const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
        assert.doesNotMatch(plan, /Seq Scan on (messages|message_recipients|delivery_attempts|feedback_events)\b/, plan)
        assert.match(plan, /messages_member_idx/, plan)
        // Recipients are probed a message at a time, never hashed or merged as a whole table.
        assert.doesNotMatch(plan, /Hash Join|Merge Join/, plan)
        assert.match(plan, /message_recipients_message_idx[^\n]*\n\s+Index Cond: \(message_id = m\.id\)/, plan)
      }
    }
    const week = await memberFigures(db, heavy.id, '7d', { now })
    const [inWeek] = await db.execute<{ n: string; complaints: string }>(sql`
      select count(*) as n, count(e.id) as complaints from messages m left join feedback_events e on e.message_id = m.id
      where m.member_id = ${heavy.id} and m.received_at >= ${week.from.toISOString()}::timestamptz`)
    assert.equal(week.member.total.sent, Number(inWeek!.n))
    assert.equal(week.member.total.complained, Number(inWeek!.complaints))
    assert.ok(week.member.total.complained > 0)
  })
})

describe('account message log', () => {
  let a: Member
  let b: Member
  const rows: string[] = []

  before(async () => {
    a = await member('loga')
    b = await member('logb')
    const a1 = await domain(a, 'la1.example')
    const a2 = await domain(a, 'la2.example')
    const b1 = await domain(b, 'lb1.example')
    const t0 = Date.now() - 10 * HOUR
    const send = async (
      d: typeof a1,
      mins: number,
      address: string,
      header?: string,
      state: RecipientState = 'delivered',
    ) =>
      message(
        a,
        d,
        new Date(t0 + mins * MIN),
        { address, state, attempts: state === 'delivered' ? delivered : [] },
        {
          ...(header ? { messageIdHeader: header } : {}),
        },
      )
    await message(a, a1, new Date(Date.now() - 31 * DAY), { address: 'old@r.example', state: 'delivered' })
    await send(a1, 1, 'a_b@r.example', '<m1.alpha@la1.example>')
    await send(a1, 2, 'axb@r.example', '<m2.alpha@la1.example>')
    await send(a2, 3, 'a%b@r.example', '<m3@la2.example>')
    await send(a2, 4, 'aXXb@r.example', '<m4@la2.example>')
    await send(a1, 5, 'a\\b@r.example', '<m5_x@la1.example>', 'deferred')
    await send(a1, 6, 'Alice@R.example', '<m6@la1.example>')
    // Three recipients accepted in the same instant (one transaction): ties broken by id.
    const same = new Date(t0 + 7 * MIN)
    for (const x of ['t1', 't2', 't3']) {
      await message(
        a,
        a2,
        same,
        { address: `${x}@r.example`, state: 'queued' },
        { messageIdHeader: `<${x}@la2.example>` },
      )
    }
    // b's mail to the same address, with a Message-ID a's search could name.
    await message(
      b,
      b1,
      new Date(t0 + 8 * MIN),
      { address: 'alice@r.example', state: 'delivered' },
      {
        messageIdHeader: '<secret@lb1.example>',
      },
    )
    const all = await messageLog(db, a.id, { limit: 200 })
    rows.push(...all.entries.map((e) => e.recipient))
  })

  it('lists the member’s recipients of the last 30 days, newest first, with their state and reply', async () => {
    assert.deepEqual(rows, [
      't3@r.example',
      't2@r.example',
      't1@r.example',
      'Alice@R.example',
      'a\\b@r.example',
      'aXXb@r.example',
      'a%b@r.example',
      'axb@r.example',
      'a_b@r.example',
    ])
    const page = await messageLog(db, a.id, { search: parseSearch('recipient', 'alice@r.example', false) })
    const e = page.entries[0]!
    assert.equal(page.entries.length, 1)
    assert.equal(e.state, 'delivered')
    assert.equal(e.attempts, 1)
    assert.equal(e.lastReply, '250 2.0.0 OK queued')
    assert.equal(e.domain, 'la1.example')
    assert.equal(e.messageIdHeader, '<m6@la1.example>')
    assert.ok(e.lastAttemptAt && e.lastAttemptAt > e.receivedAt)
  })

  it('searches by recipient and Message-ID, exact or by prefix, LIKE characters standing for themselves', async () => {
    const find = async (field: string, value: string, prefix: boolean) =>
      (await messageLog(db, a.id, { search: parseSearch(field, value, prefix) })).entries.map((e) => e.recipient)
    assert.deepEqual(await find('recipient', 'A_B@R.EXAMPLE', false), ['a_b@r.example'])
    assert.deepEqual(await find('recipient', 'a_', true), ['a_b@r.example'])
    assert.deepEqual(await find('recipient', 'a%', true), ['a%b@r.example'])
    assert.deepEqual(await find('recipient', 'a\\', true), ['a\\b@r.example'])
    assert.deepEqual(await find('recipient', '%', true), [])
    assert.deepEqual(await find('recipient', '_', true), [])
    assert.deepEqual(
      await find('recipient', 'a', true),
      rows.filter((r) => r.toLowerCase().startsWith('a')),
    )
    assert.deepEqual(await find('messageId', '<m3@la2.example>', false), ['a%b@r.example'])
    assert.deepEqual(await find('messageId', 'm3@la2.example', false), ['a%b@r.example'])
    assert.deepEqual(await find('messageId', '<m1.alpha', true), ['a_b@r.example'])
    assert.deepEqual(await find('messageId', 'm5_', true), ['a\\b@r.example'])
    assert.deepEqual(await find('messageId', 'm_', true), [])
    assert.deepEqual(await find('messageId', 'm%', true), [])
    assert.equal(likePrefix('a\\%_'), 'a\\\\\\%\\_%')
  })

  it('never returns another member’s message, even searched for exactly', async () => {
    assert.deepEqual(
      (await messageLog(db, a.id, { search: parseSearch('messageId', '<secret@lb1.example>', false) })).entries,
      [],
    )
    assert.deepEqual((await messageLog(db, a.id, { search: parseSearch('messageId', 'secret', true) })).entries, [])
    const alice = (await messageLog(db, a.id, { search: parseSearch('recipient', 'alice@r.example', false) })).entries
    assert.deepEqual(
      alice.map((e) => e.messageIdHeader),
      ['<m6@la1.example>'],
    )
    assert.equal((await messageLog(db, b.id)).entries.length, 1)
    await assert.rejects(messageLog(db, a.id, { domain: 'lb1.example' }), NotMemberDomainError)
    assert.deepEqual(
      (await messageLog(db, a.id, { domain: 'la2.example' })).entries.map((e) => e.recipient),
      ['t3@r.example', 't2@r.example', 't1@r.example', 'aXXb@r.example', 'a%b@r.example'],
    )
  })

  it('pages by keyset: no row twice or missed while new mail arrives, ties in one instant included', async () => {
    const seen: string[] = []
    let after: string | undefined
    let pages = 0
    do {
      const page = await messageLog(db, a.id, { limit: 2, after })
      seen.push(...page.entries.map((e) => e.recipient))
      after = page.next ?? undefined
      pages++
      assert.ok(pages <= 10, 'the pager does not end')
      // New mail between pages lands before the first page, never in the ones still to come.
      const a1 = (await db.execute<{ id: string }>(sql`select id::text from domains where domain = 'la1.example'`))[0]!
      await message(a, { id: Number(a1.id), domain: 'la1.example' }, new Date(), {
        address: `new${pages}@r.example`,
        state: 'queued',
      })
    } while (after)
    assert.deepEqual(seen, rows)
    assert.equal(pages, 5)
    const fresh = await messageLog(db, a.id, { limit: 2 })
    assert.deepEqual(
      fresh.entries.map((e) => e.recipient),
      ['new5@r.example', 'new4@r.example'],
    )
  })

  it('pages exactly across messages a microsecond apart (the cursor keeps what Postgres keeps)', async () => {
    const m = await member('logmicro')
    const d = await domain(m, 'micro.example')
    // One base for all (each statement's now() would differ), a microsecond between them.
    const base = new Date(Date.now() - DAY).toISOString()
    for (const us of [1, 2, 3, 999]) {
      const { id } = await message(m, d, new Date(), { address: `u${us}@r.example`, state: 'queued' })
      await db.execute(
        sql`update messages set received_at = ${base}::timestamptz + ${`${us} microseconds`}::interval where id = ${id}`,
      )
    }
    const seen: string[] = []
    let after: string | undefined
    do {
      const page = await messageLog(db, m.id, { limit: 1, after })
      seen.push(...page.entries.map((e) => e.recipient))
      after = page.next ?? undefined
      // A cursor that lost precision would page forever or skip: stop and show it.
      assert.ok(seen.length <= 8, `the pager does not end: ${seen.join(' ')}`)
    } while (after)
    assert.deepEqual(seen, ['u999@r.example', 'u3@r.example', 'u2@r.example', 'u1@r.example'])
  })

  it('refuses bad input at the edge with a message to show', async () => {
    await assert.rejects(messageLog(db, a.id, { after: 'nonsense' }), LogQueryError)
    await assert.rejects(messageLog(db, a.id, { after: Buffer.from('1.2; drop').toString('base64url') }), LogQueryError)
    assert.throws(() => parseSearch('recipient', `${'a'.repeat(255)}@r.example`, false), LogQueryError)
    assert.throws(() => parseSearch('recipient', 'a b@r.example', false), /spaces or control/)
    assert.throws(() => parseSearch('recipient', 'a\u0000b', false), LogQueryError)
    assert.throws(() => parseSearch('subject', 'x', false), /recipient or messageId/)
    assert.throws(() => parseSearch('messageId', '<>', false), LogQueryError)
    assert.equal(parseSearch('recipient', '   ', true), undefined)
    const bad = readLogRequest(new URLSearchParams({ field: 'recipient', q: 'x'.repeat(400) }))
    assert.match(bad.error ?? '', /at most 254/)
    assert.equal(bad.query.search, undefined)
    const good = readLogRequest(
      new URLSearchParams({ field: 'messageId', q: '<m3@la2.example>', prefix: '1', domain: 'LA2.example' }),
    )
    assert.deepEqual(good.query, {
      search: { field: 'messageId', value: 'm3@la2.example', prefix: true },
      domain: 'la2.example',
      after: undefined,
    })
  })

  it('renders the log and its search form escaped, with a next link that keeps the search', async () => {
    const d = (await db.execute<{ id: string }>(sql`select id::text from domains where domain = 'la1.example'`))[0]!
    await message(
      a,
      { id: Number(d.id), domain: 'la1.example' },
      new Date(),
      {
        address: 'aevil@r.example',
        state: 'bounced',
        lastReply: '550 <script>alert(1)</script> & "no"',
      },
      { messageIdHeader: '<"><img src=x>@la1.example>' },
    )
    const { query, form } = readLogRequest(new URLSearchParams({ field: 'recipient', q: 'a', prefix: '1' }))
    const page = await messageLog(db, a.id, { ...query, limit: 1 })
    const html = messageLogFragment(
      { ...page, next: page.next },
      { action: '/account/log', form, domains: ['la1.example', '<la2>'] },
    )
    assert.doesNotMatch(html, /<script|<img|style=/)
    assert.match(html, /550 &lt;script&gt;alert\(1\)&lt;\/script&gt; &amp; &quot;no&quot;/)
    assert.match(html, /&lt;&quot;&gt;&lt;img src=x&gt;@la1.example&gt;/)
    assert.match(html, /<option value="&lt;la2&gt;">&lt;la2&gt;<\/option>/)
    assert.match(html, /<form class="log-search" method="get" action="\/account\/log"/)
    assert.match(html, /<label for="message-log-q">/)
    const next = /<a rel="next" href="([^"]+)"/.exec(html)?.[1]?.replace(/&amp;/g, '&')
    assert.ok(next)
    const params = new URL(next, 'http://x').searchParams
    assert.equal(params.get('q'), 'a')
    assert.equal(params.get('prefix'), '1')
    assert.equal(params.get('after'), page.next)
  })
})

describe('account standing', () => {
  const tiers = [
    { fromDay: 0, cap: 50 },
    { fromDay: 3, cap: 200 },
    { fromDay: 7, cap: 1000 },
  ]
  const capFor: CapRule = (activatedAt, now) => dailyCapFor(activatedAt, now, tiers, 10_000)

  async function run(
    did: string,
    name: string,
    outcome: 'pass' | 'fail',
    at: Date,
    checks: [string, string, string][],
  ) {
    const [r] = await db.execute<{ id: string }>(sql`
      insert into verification_runs (did, domain, trigger, outcome, started_at, finished_at)
      values (${did}, ${name}, 'schedule', ${outcome}, ${at.toISOString()}::timestamptz, ${at.toISOString()}::timestamptz)
      returning id::text`)
    for (const [check, o, reason] of checks) {
      await db.execute(sql`
        insert into verification_checks (run_id, "check", outcome, reason, warnings)
        values (${r!.id}, ${check}, ${o}, ${reason}, ${check === 'spf' && o === 'pass' ? sql`array['10 lookups: at the limit']` : sql`'{}'::text[]`})`)
    }
    return Number(r!.id)
  }

  it('shows each live domain’s last run with its checks, holds, warming, cap left today and suppressions', async () => {
    const now = new Date()
    const a = await member('sta')
    const b = await member('stb')
    const d1 = await domain(a, 's1.example', { activatedAt: new Date(now.getTime() - 2 * DAY - HOUR) })
    const d2 = await domain(a, 's2.example', { activatedAt: new Date(now.getTime() - 20 * DAY) })
    await domain(a, 'gone.example', { removed: true })
    const day = now.toISOString().slice(0, 10)
    const yesterday = new Date(now.getTime() - DAY).toISOString().slice(0, 10)
    await db.execute(sql`insert into send_volume (member_id, domain_id, day, recipients, messages)
      values (${a.id}, ${d1.id}, ${day}::date, 12, 3), (${a.id}, ${d2.id}, ${yesterday}::date, 500, 20)`)

    const older = new Date(now.getTime() - 2 * DAY)
    const last = new Date(now.getTime() - HOUR)
    await run(a.did, 's1.example', 'fail', older, [['dkim', 'fail', 'no DKIM record at s1r._domainkey.s1.example']])
    const runId = await run(a.did, 's1.example', 'pass', last, [
      ['dmarc', 'pass', 'p=quarantine; rua=<mailto:x@y> & "more"'],
      ['domain_control', 'pass', 'the handle is s1.example'],
      ['spf', 'pass', 'includes the pool'],
      ['mx', 'pass', 'mx.s1.example'],
      ['dkim', 'pass', 's1r and s1e published'],
    ])
    const due = new Date(now.getTime() + 5 * HOUR)
    await db.execute(sql`
      insert into verification_status (did, domain, holds, last_run_id, last_outcome, last_run_at, last_pass_at, next_due_at)
      values (${a.did}, 's1.example', true, ${runId}, 'pass', ${last.toISOString()}::timestamptz,
              ${last.toISOString()}::timestamptz, ${due.toISOString()}::timestamptz)`)
    // b claims s2.example too and fails: that is b's run, never shown as a's.
    const bRun = await run(b.did, 's2.example', 'fail', last, [['domain_control', 'fail', 's2.example is held by …']])
    await db.execute(sql`
      insert into verification_status (did, domain, holds, last_run_id, last_outcome, last_run_at)
      values (${b.did}, 's2.example', false, ${bRun}, 'fail', ${last.toISOString()}::timestamptz)`)

    await suppress(db, { memberId: a.id, address: 'p1@r.example', reason: 'complaint', domainId: d1.id })
    await suppress(db, { memberId: a.id, address: 'p2@r.example', reason: 'hard_bounce', domainId: d1.id })
    await suppress(db, { memberId: a.id, address: 'p3@r.example', reason: 'hard_bounce', domainId: d2.id })
    await suppress(db, { memberId: a.id, address: 'p4@r.example', reason: 'manual' })
    await suppress(db, {
      memberId: a.id,
      address: 'p5@r.example',
      reason: 'hard_bounce',
      domainId: d1.id,
      bounceForMs: 1,
    })
    await db.execute(
      sql`update suppressions set expires_at = now() - interval '1 minute' where address = 'p5@r.example'`,
    )
    await suppress(db, { memberId: b.id, address: 'p6@r.example', reason: 'hard_bounce' })

    const s = await accountStanding(db, a.id, { capFor, now })
    assert.ok(s)
    assert.equal(s.did, a.did)
    assert.equal(s.suppressions, 4)
    assert.deepEqual(
      s.domains.map((d) => d.domain),
      ['s1.example', 's2.example'],
    )
    const [one, two] = s.domains as [(typeof s.domains)[0], (typeof s.domains)[0]]
    assert.equal(one.holds, true)
    assert.equal(one.verification?.outcome, 'pass')
    assert.equal(one.verification?.lastRunAt.getTime(), last.getTime())
    assert.equal(one.verification?.nextDueAt?.getTime(), due.getTime())
    assert.deepEqual(
      one.verification?.checks.map((c) => [c.check, c.outcome, c.reason]),
      [
        ['domain_control', 'pass', 'the handle is s1.example'],
        ['mx', 'pass', 'mx.s1.example'],
        ['spf', 'pass', 'includes the pool'],
        ['dkim', 'pass', 's1r and s1e published'],
        ['dmarc', 'pass', 'p=quarantine; rua=<mailto:x@y> & "more"'],
      ],
    )
    assert.deepEqual(one.verification?.checks[2]?.warnings, ['10 lookups: at the limit'])
    assert.deepEqual(one.warming, {
      day: 2,
      warming: true,
      cap: 50,
      sentToday: 12,
      left: 38,
      resetsAt: new Date(Date.parse(`${day}T00:00:00Z`) + DAY),
    })
    assert.equal(one.suppressions, 2)

    assert.equal(two.holds, false)
    assert.equal(two.verification, null)
    assert.equal(two.warming.warming, false)
    assert.equal(two.warming.cap, 10_000)
    assert.equal(two.warming.sentToday, 0)
    assert.equal(two.warming.left, 10_000)
    assert.equal(two.suppressions, 1)

    const html = standingFragment(s)
    assert.match(html, /<h3 id="standing-0-h">s1.example<\/h3>/)
    assert.match(html, /Domain control: Passed/)
    assert.match(html, /<dt>Left today<\/dt><dd>38 \(12 sent;/)
    assert.match(html, /day 3 of warming/)
    assert.doesNotMatch(html, /held by|<mailto/)
    assert.match(html, /p=quarantine; rua=&lt;mailto:x@y&gt; &amp; &quot;more&quot;/)

    assert.equal(await accountStanding(db, 9_999_999, { capFor, now }), null)
  })

  it('totals volume, bounces and complaints per X-Atmos-Category, and shows them', async () => {
    const m = await member('cata')
    const d = await domain(m, 'cat.example')
    const at = new Date(Date.now() - MIN)
    const bounced: Attempt[] = [{ outcome: 'failed', reply: '550 5.1.1 no such user' }]
    const sent = [
      ['newsletter', 'delivered'],
      ['newsletter', 'delivered'],
      ['newsletter', 'bounced'],
      ['password-reset', 'delivered'],
      [undefined, 'delivered'],
    ] as const
    const ids: string[] = []
    for (const [i, [category, state]] of sent.entries()) {
      const r = await message(
        m,
        d,
        at,
        { address: `c${i}@r.example`, state, attempts: state === 'bounced' ? bounced : delivered },
        category ? { category } : {},
      )
      ids.push(r.id)
    }
    await db.execute(sql`
      insert into feedback_events (type, member_id, message_id, recipient, source)
      values ('complaint', ${m.id}, ${ids[0]!}, 'c0@r.example', 'arf')`)
    const f = await memberFigures(db, m.id, '24h')
    const by = Object.fromEntries(
      f.categories.map((c) => [
        String(c.category),
        [c.total.sent, c.total.delivered, c.total.bounced, c.total.complained],
      ]),
    )
    assert.deepEqual(by, { newsletter: [3, 2, 1, 1], 'password-reset': [1, 1, 0, 0], null: [1, 1, 0, 0] })
    assert.equal(f.categories[0]!.category, 'newsletter', 'most sent first')
    const html = figuresFragment(f)
    assert.match(html, /By category/)
    assert.match(html, /<th scope="row">newsletter<\/th><td>3<\/td><td>2<\/td><td>1<\/td><td>1<\/td>/)
    assert.match(html, /<th scope="row">\(no category\)<\/th><td>1<\/td>/)
    // Another member's figures hold none of it.
    const other = await memberFigures(db, (await member('catb')).id, '24h')
    assert.deepEqual(other.categories, [])
    assert.doesNotMatch(figuresFragment(other), /By category/)
  })

  it('renders the figures fragment with the chart, the table and escaped domain names', async () => {
    const m = await member('viewa')
    const d = await domain(m, 'v&"<x>.example')
    await message(m, d, new Date(Date.now() - MIN), { address: 'q@r.example', state: 'delivered', attempts: delivered })
    const f = await memberFigures(db, m.id, '24h')
    const html = figuresFragment(f, { perDomainCharts: true })
    assert.doesNotMatch(html, /<x>|style=|<script/)
    assert.match(html, /<th scope="row">v&amp;&quot;&lt;x&gt;.example<\/th><td>1<\/td><td>1<\/td>/)
    assert.match(html, /<svg [^>]*role="img"/)
    assert.match(html, /<table class="chart-table">/)
    assert.equal(html.match(/<svg /g)?.length, 2)
    const none = figuresFragment(await memberFigures(db, (await member('viewb')).id, '7d'))
    assert.match(none, /No mail over the last 7 days/)
    assert.doesNotMatch(none, /NaN/)
  })
})
