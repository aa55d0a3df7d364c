import { type Db, type Pool, type PoolMessage, spoolPoolMessage } from '@atmos/db'
import { Batcher } from '@atmos/runtime'
import { sql } from 'drizzle-orm'
import { type BounceEvent, type RecordedBounce, recordBounce } from './bounce-events.ts'
import type { TlsRecord } from './tls/policy.ts'
import { emitAttemptOutcomes } from './webhook-events.ts'

// The delivery side of the spool. A recipient is claimed for one attempt by a single
// conditional UPDATE: `attempts` goes up by one (it is the claim's fencing token) and
// `next_attempt_at` moves to the end of the lease, so no other worker finds it due while
// the attempt runs. A worker killed mid-attempt simply stops renewing: once the lease has
// run out the recipient is due again, and the next claim sees an attempt begun but never
// recorded in delivery_attempts, which it reports as a possible duplicate.

export type ClaimedRecipient = {
  id: number
  messageId: string
  address: string
  domain: string
  /** This attempt's number (1 for the first); also the claim's fencing token. */
  attempt: number
  /** Attempts begun before this one that never recorded an outcome (a worker died). */
  lapsed: number
}

export type SpooledMessage = {
  id: string
  /** Null for the pool's own mail (fbl-ingest's forwards to the operator inbox). */
  memberId: number | null
  /** The sender as the member gave it in MAIL FROM (empty for a null sender): where a bounce notice goes. */
  envelopeFrom: string
  returnPath: string
  body: Buffer
  receivedAt: Date
  /** The earlier of messages.expires_at and received_at + maxAge. */
  expiresAt: Date
  /** The sender asked for REQUIRETLS (RFC 8689). */
  requireTls: boolean
  /** The forward-to address of the member's domain it was sent as, if set: bounce notices go there. */
  forwardTo?: string | null
}

export type AttemptRecord = {
  startedAt: Date
  durationMs: number
  mxHost?: string | undefined
  mxAddress?: string | undefined
  replyCode?: number | undefined
  enhancedStatus?: string | undefined
  reply: string
  outcome: 'delivered' | 'deferred' | 'failed'
  /** The TLS the attempt used (delivery_attempts.tls); absent when it never got that far. */
  tls?: TlsRecord | undefined
}

export type Finish =
  | { state: 'delivered' }
  | { state: 'deferred'; retryInMs: number }
  | {
      state: 'bounced' | 'expired'
      bounce: BounceEvent
      /** The bounce notice to the sender, spooled with the bounce unless the message already has one. */
      notice?: PoolMessage | undefined
    }

export type Finished = {
  /** False when the claim had lapsed and another worker holds the recipient now. */
  applied: boolean
  messageDone: boolean
  bounce?: RecordedBounce
  /** The bounce notice spooled with it (its messages.id), to be enqueued for delivery. */
  noticeId?: string
}

/**
 * A due recipient the claim ended as `failed` instead of handing it out: its member was
 * suspended, or the address suppressed, after the message was queued.
 */
export type StoppedRecipient = { id: number; messageId: string; address: string; reason: string }

/**
 * What one claim took: the due recipients (none when every due one was stopped), their
 * message, the recipients it stopped, and the database's time.
 */
export type Claim = {
  message: SpooledMessage
  recipients: ClaimedRecipient[]
  stopped: StoppedRecipient[]
  now: Date
}

type ClaimRequest = { messageId: string; ids: number[] | undefined; leaseMs: number }
type FinishRequest = {
  r: ClaimedRecipient
  attempt: AttemptRecord
  finish: Extract<Finish, { state: 'delivered' | 'deferred' }>
}

// "Still to try" for the hot statements, which find recipients by id or by message and must
// never do it through message_recipients_pending_idx. That partial index (state queued or
// deferred, for the reconciler's sweep) gets a new entry at every claim, and its dead entries
// stay until a vacuum: bitmap scans, unlike plain index scans, never mark them dead. Few
// live rows match it, so the planner, seeing `state in ('queued', 'deferred')`, liked to read
// the whole index and hash-join it, which under load read some 3 500 index entries a message
// in the bench. Behind a CASE the condition no longer implies the index's
// predicate, so the planner cannot pick that index and probes the primary key or
// message_recipients_message_idx instead. Written out in each statement (`case when
// x.state in ('queued', 'deferred') then true else false end`): interpolated text would be a
// parameter. The reconciler's sweep (overdue) keeps the plain form, and the index. The same
// holds for messages_queued_idx (messages still queued): marking a message done finds it by id.
export class DeliverySpool {
  private readonly db: Db
  /** The raw pool under `db`, for the hot statements (claims and finishes, batched). */
  private readonly sql: Pool
  private readonly maxAgeMs: number
  private readonly suppressForMs: number
  private readonly claims = new Batcher((requests: ClaimRequest[]) => this.claimBatch(requests))
  private readonly finishes = new Batcher((items: FinishRequest[]) => this.finishBatch(items))

  constructor(opts: { db: Db; maxAgeMs: number; suppressForMs: number }) {
    this.db = opts.db
    this.sql = opts.db.$client
    this.maxAgeMs = opts.maxAgeMs
    this.suppressForMs = opts.suppressForMs
  }

  /**
   * Claims the message's recipients that are due (all, or only `ids`) for one attempt each,
   * and reads the message with them. Also returns the database's clock, which leases and
   * expiry are measured by. Undefined when nothing was due. Concurrent claims share one
   * statement (see Batcher).
   */
  claim(messageId: string, ids: number[] | undefined, leaseMs: number): Promise<Claim | undefined> {
    return this.claims.call({ messageId, ids: ids?.length ? ids : undefined, leaseMs })
  }

  private async claimBatch(requests: ClaimRequest[]): Promise<Array<Claim | undefined>> {
    // One row per wanted recipient, or per message when all its recipients are wanted.
    const want = requests.flatMap((q, req) =>
      (q.ids ?? [null]).map((rid) => ({ mid: q.messageId, rid, lease: q.leaseMs / 1000, req })),
    )
    const rows = await this.sql<
      {
        req: number
        id: string
        address: string
        domain: string
        attempts: number
        stopped: string | null
        recorded: string
        now: number
        memberId: string | null
        envelopeFrom: string
        returnPath: string
        body: Buffer | null
        receivedAt: number
        expiresAt: number
        requireTls: boolean
        forwardTo: string | null
      }[]
    >`
      with want as (
        select * from unnest(${want.map((w) => w.mid)}::text[]::uuid[], ${want.map((w) => w.rid)}::bigint[],
                             ${want.map((w) => w.lease)}::float8[], ${want.map((w) => w.req)}::int[])
          as w(mid, rid, lease, req)
      ), due as (
        -- Why a due recipient must not be tried any more: its member or the domain it was
        -- sent as was suspended, or the address suppressed (not removed, not expired: an
        -- index probe), since it was queued.
        select distinct on (r.id) r.id, w.lease, w.req,
          case when mb.status = 'suspended'
                 then 'not delivered: the sending member is suspended'
                      || coalesce(' (' || left(mb.status_reason, 200) || ')', '')
               when dm.status = 'suspended'
                 then 'not delivered: the sending domain ' || dm.domain || ' is suspended'
                      || coalesce(' (' || left(dm.status_reason, 200) || ')', '')
               when s.reason is not null
                 then 'not delivered: the recipient is on the member''s suppression list ('
                      || s.reason || ' since ' || to_char(s.created_at at time zone 'UTC', 'YYYY-MM-DD') || ')'
          end as stopped
        from want w
        join message_recipients r on r.message_id = w.mid and (w.rid is null or r.id = w.rid)
        join messages m on m.id = r.message_id
        left join members mb on mb.id = m.member_id
        left join domains dm on dm.id = m.domain_id
        left join lateral (
          select x.reason, x.created_at from suppressions x
          where x.member_id = m.member_id and x.address = lower(r.address)
            and x.removed_at is null and (x.expires_at is null or x.expires_at > now())
          limit 1) s on true
        where (case when r.state in ('queued', 'deferred')
                     and (r.next_attempt_at is null or r.next_attempt_at <= now()) then true else false end)
        -- A recipient two requests want is claimed once, for the first of them.
        order by r.id, w.req
      ), claimed as (
        -- A stopped recipient ends as failed here, its attempts unchanged: no attempt was made.
        update message_recipients r
        set attempts = r.attempts + case when d.stopped is null then 1 else 0 end,
            state = case when d.stopped is null then r.state else 'failed' end,
            next_attempt_at = case when d.stopped is null then now() + make_interval(secs => d.lease) end,
            last_reply = coalesce(d.stopped, r.last_reply),
            updated_at = now()
        from due d
        where r.id = d.id and (case when r.state in ('queued', 'deferred')
                     and (r.next_attempt_at is null or r.next_attempt_at <= now()) then true else false end)
        returning r.id, r.message_id, r.address, r.domain, r.attempts, d.req, d.stopped
      ), done as (
        -- Stopping the last recipient left to try finishes the message. This statement's
        -- snapshot still sees the stopped recipients as they were, hence the exclusion.
        update messages m set state = 'done', done_at = now()
        where (case when m.state = 'queued' then true else false end)
          and m.id in (select c.message_id from claimed c where c.stopped is not null)
          and not exists (select 1 from message_recipients o
                          where o.message_id = m.id and (case when o.state in ('queued', 'deferred') then true else false end)
                            and o.id not in (select c.id from claimed c where c.stopped is not null))
        returning m.id
      )
      select c.req, c.id::text, c.address, c.domain, c.attempts, c.stopped,
        (select count(*) from delivery_attempts a where a.recipient_id = c.id)::text as recorded,
        (extract(epoch from now()) * 1000)::float8 as now,
        m.member_id::text as "memberId", m.envelope_from as "envelopeFrom", m.return_path as "returnPath",
        -- The body once a request, however many of its recipients share it; none for stopped ones.
        case when c.stopped is null
               and row_number() over (partition by c.req, c.stopped is null order by c.id) = 1 then m.body end as body,
        (extract(epoch from m.received_at) * 1000)::float8 as "receivedAt",
        (extract(epoch from least(m.expires_at, m.received_at + make_interval(secs => ${this.maxAgeMs / 1000})))
          * 1000)::float8 as "expiresAt",
        m.require_tls as "requireTls",
        (select d.forward_to from domains d where d.id = m.domain_id) as "forwardTo"
      from claimed c join messages m on m.id = c.message_id
      order by c.req, c.id`
    return requests.map((q, req) => {
      const mine = rows.filter((r) => r.req === req)
      const going = mine.filter((r) => r.stopped === null)
      const stopped = mine.flatMap((r) =>
        r.stopped === null ? [] : [{ id: Number(r.id), messageId: q.messageId, address: r.address, reason: r.stopped }],
      )
      const first = going[0] ?? mine[0]
      if (!first || (going.length && !going[0]?.body)) return undefined
      // Epoch milliseconds: drizzle's wrapping of the pool turns timestamps into bare text.
      return {
        now: new Date(first.now),
        message: {
          id: q.messageId,
          memberId: first.memberId === null ? null : Number(first.memberId),
          envelopeFrom: first.envelopeFrom,
          returnPath: first.returnPath,
          body: going[0]?.body ?? Buffer.alloc(0),
          receivedAt: new Date(first.receivedAt),
          expiresAt: new Date(first.expiresAt),
          requireTls: first.requireTls === true,
          forwardTo: first.forwardTo,
        },
        recipients: going.map((r) => ({
          id: Number(r.id),
          messageId: q.messageId,
          address: r.address,
          domain: r.domain,
          attempt: r.attempts,
          lapsed: Math.max(0, r.attempts - 1 - Number(r.recorded)),
        })),
        stopped,
      }
    })
  }

  /** Keeps a claim while its attempt runs; false once it was lost. */
  async renew(r: ClaimedRecipient, leaseMs: number): Promise<boolean> {
    const rows = await this.sql`
      update message_recipients
      set next_attempt_at = now() + make_interval(secs => ${leaseMs / 1000})
      where id = ${r.id} and attempts = ${r.attempt} and state in ('queued', 'deferred')
      returning id`
    return rows.length > 0
  }

  /** Gives a claim back without counting it as an attempt (no connection slot was free). */
  async putBack(r: ClaimedRecipient, retryInMs: number): Promise<boolean> {
    const rows = await this.sql`
      update message_recipients
      set attempts = attempts - 1,
          next_attempt_at = now() + make_interval(secs => ${retryInMs / 1000}),
          updated_at = now()
      where id = ${r.id} and attempts = ${r.attempt} and state in ('queued', 'deferred')
      returning id`
    return rows.length > 0
  }

  /** The recipient's latest recorded attempt: what an expiry bounce reports as the last reply. */
  async lastAttempt(recipientId: number): Promise<AttemptRecord | undefined> {
    const [row] = await this.sql<
      {
        started_at: number
        duration_ms: number | null
        mx_host: string | null
        mx_address: string | null
        reply_code: number | null
        enhanced_status: string | null
        reply: string | null
        outcome: AttemptRecord['outcome']
      }[]
    >`
      select (extract(epoch from started_at) * 1000)::float8 as started_at, duration_ms, mx_host, mx_address,
             reply_code, enhanced_status, reply, outcome
      from delivery_attempts where recipient_id = ${recipientId} order by id desc limit 1`
    if (!row) return undefined
    return {
      startedAt: new Date(row.started_at),
      durationMs: row.duration_ms ?? 0,
      mxHost: row.mx_host ?? undefined,
      mxAddress: row.mx_address ?? undefined,
      replyCode: row.reply_code ?? undefined,
      enhancedStatus: row.enhanced_status ?? undefined,
      reply: row.reply ?? '',
      outcome: row.outcome,
    }
  }

  /**
   * Records an attempt (when one was made) and its consequence atomically: the recipient's
   * new state, the bounce event and suppression, and the message marked done when no
   * recipient is left to try. Fenced by the claim: a worker whose claim lapsed records its
   * attempt but changes nothing.
   */
  async finish(r: ClaimedRecipient, attempt: AttemptRecord | undefined, finish: Finish): Promise<Finished> {
    if (attempt && (finish.state === 'delivered' || finish.state === 'deferred')) {
      return this.finishAttempt(r, attempt, finish)
    }
    return this.finishWithBounce(r, attempt, finish)
  }

  /**
   * The common case, delivered or deferred: concurrent finishes share one statement,
   * committed on its own (see Batcher). "No recipient left" excludes the recipients the
   * statement itself delivers, whose update its snapshot does not see yet; two recipients
   * of one message finished at the same instant by separate statements can each miss the
   * other, which the reconciler's sweep of finished messages settles.
   */
  private finishAttempt(
    r: ClaimedRecipient,
    attempt: AttemptRecord,
    finish: Extract<Finish, { state: 'delivered' | 'deferred' }>,
  ): Promise<Finished> {
    return this.finishes.call({ r, attempt, finish })
  }

  private async finishBatch(items: FinishRequest[]): Promise<Finished[]> {
    const col = <T>(f: (i: FinishRequest) => T) => items.map(f)
    // One transaction: the outcomes and the webhook events that tell the members of them.
    return this.sql.begin(async (tx) => {
      const [row] = await tx<{ applied: string[] | null; done: string[] | null }[]>`
      with input as (
        select * from unnest(
          ${col((i) => i.r.id)}::bigint[], ${col((i) => i.r.attempt)}::int[], ${col((i) => i.r.messageId)}::text[]::uuid[],
          ${col((i) => i.finish.state)}::text[],
          ${col((i) => (i.finish.state === 'deferred' ? i.finish.retryInMs / 1000 : null))}::float8[],
          ${col((i) => i.attempt.startedAt.toISOString())}::text[]::timestamptz[], ${col((i) => i.attempt.durationMs)}::int[],
          ${col((i) => i.attempt.mxHost ?? null)}::text[], ${col((i) => i.attempt.mxAddress ?? null)}::text[],
          ${col((i) => i.attempt.replyCode ?? null)}::int[], ${col((i) => i.attempt.enhancedStatus ?? null)}::text[],
          ${col((i) => i.attempt.reply.slice(0, 2000))}::text[], ${col((i) => i.attempt.outcome)}::text[],
          ${col((i) => (i.attempt.tls ? JSON.stringify(i.attempt.tls) : null))}::text[]::jsonb[]
        ) as i(rid, fence, mid, state, retry, started, duration, mx_host, mx_address, code, enhanced, reply, outcome, tls)
      ), attempt as (
        insert into delivery_attempts
          (recipient_id, message_id, started_at, duration_ms, mx_host, mx_address, reply_code, enhanced_status, reply, outcome, tls)
        select rid, mid, started, duration, mx_host, mx_address, code, enhanced, reply, outcome, tls from input
      ), updated as (
        update message_recipients r
        set state = i.state,
            next_attempt_at = case when i.retry is null then null else now() + make_interval(secs => i.retry) end,
            last_reply = i.reply,
            updated_at = now()
        from input i
        where r.id = i.rid and r.attempts = i.fence and (case when r.state in ('queued', 'deferred') then true else false end)
        returning r.id, r.message_id, i.state
      ), done as (
        update messages m set state = 'done', done_at = now()
        from updated u
        where u.state = 'delivered' and m.id = u.message_id and (case when m.state = 'queued' then true else false end)
          and not exists (select 1 from message_recipients o
                          where o.message_id = u.message_id and (case when o.state in ('queued', 'deferred') then true else false end)
                            and o.id not in (select d.id from updated d where d.state = 'delivered'))
        returning m.id
      )
      select (select array_agg(id::text) from updated) as applied, (select array_agg(id::text) from done) as done`
      const applied = new Set(row?.applied ?? [])
      const done = new Set(row?.done ?? [])
      await emitAttemptOutcomes(
        tx,
        items
          .filter((i) => applied.has(String(i.r.id)))
          .map((i) => ({
            messageId: i.r.messageId,
            recipient: i.r.address,
            attempt: i.r.attempt,
            state: i.finish.state,
            retryInMs: i.finish.state === 'deferred' ? i.finish.retryInMs : null,
            record: i.attempt,
          })),
      )
      return items.map((i) => ({
        applied: applied.has(String(i.r.id)),
        messageDone: applied.has(String(i.r.id)) && i.finish.state === 'delivered' && done.has(i.r.messageId),
      }))
    })
  }

  /** A bounce or an expiry: the event, the suppression and the state change in one transaction. */
  private async finishWithBounce(
    r: ClaimedRecipient,
    attempt: AttemptRecord | undefined,
    finish: Finish,
  ): Promise<Finished> {
    return this.db.transaction(async (tx) => {
      if (attempt) {
        await tx.execute(sql`
          insert into delivery_attempts
            (recipient_id, message_id, started_at, duration_ms, mx_host, mx_address, reply_code, enhanced_status, reply, outcome, tls)
          values
            (${r.id}, ${r.messageId}, ${attempt.startedAt.toISOString()}::timestamptz, ${attempt.durationMs}, ${attempt.mxHost ?? null},
             ${attempt.mxAddress ?? null}, ${attempt.replyCode ?? null}, ${attempt.enhancedStatus ?? null},
             ${attempt.reply.slice(0, 2000)}, ${attempt.outcome}, ${attempt.tls ? JSON.stringify(attempt.tls) : null}::jsonb)`)
      }
      const retrySecs = finish.state === 'deferred' ? finish.retryInMs / 1000 : null
      const updated = await tx.execute(sql`
        update message_recipients
        set state = ${finish.state},
            attempts = attempts - ${attempt ? 0 : 1},
            next_attempt_at = case when ${retrySecs}::float8 is null then null
                                   else now() + make_interval(secs => ${retrySecs}::float8) end,
            last_reply = coalesce(${attempt?.reply.slice(0, 2000) ?? null}, last_reply),
            updated_at = now()
        where id = ${r.id} and attempts = ${r.attempt} and state in ('queued', 'deferred')
        returning id`)
      if (updated.length === 0) return { applied: false, messageDone: false }
      const bounce =
        finish.state === 'bounced' || finish.state === 'expired'
          ? await recordBounce(tx, finish.bounce, { suppressForMs: this.suppressForMs })
          : undefined
      // At most one notice a message: the first bounce to claim the message's slot spools it.
      let noticeId: string | undefined
      if ((finish.state === 'bounced' || finish.state === 'expired') && finish.notice) {
        const slot = await tx.execute(sql`
          update messages set bounce_notice_id = ${finish.notice.id}
          where id = ${r.messageId} and bounce_notice_id is null and member_id is not null
          returning id`)
        if (slot.length) noticeId = await spoolPoolMessage(tx, finish.notice)
      }
      const done = await tx.execute(sql`
        update messages set state = 'done', done_at = now()
        where id = ${r.messageId} and state = 'queued'
          and not exists (select 1 from message_recipients
                          where message_id = ${r.messageId} and state in ('queued', 'deferred'))
        returning id`)
      return {
        applied: true,
        messageDone: done.length > 0,
        ...(bounce ? { bounce } : {}),
        ...(noticeId ? { noticeId } : {}),
      }
    })
  }

  /**
   * Marks done the messages left queued with no recipient to try, which two recipients
   * finishing at once can leave behind (see finishAttempt). Returns how many.
   */
  async settleFinished(olderThanMs: number): Promise<number> {
    // Walks the queued messages (a partial index) with one index probe each: the same
    // order of work as finding the overdue recipients.
    const rows = await this.sql`
      update messages m set state = 'done', done_at = now()
      where m.state = 'queued' and m.received_at <= now() - make_interval(secs => ${olderThanMs / 1000})
        and not exists (select 1 from message_recipients o
                        where o.message_id = m.id and o.state in ('queued', 'deferred'))
      returning m.id`
    return rows.length
  }

  /**
   * Drops the bodies of messages done for longer than `retentionMs`, oldest first, at most
   * `limit` of them; returns how many. An empty body stays in their place (the column is
   * required) and `size` keeps what it was.
   */
  async purgeBodies(retentionMs: number, limit: number): Promise<number> {
    // Picked once (materialized): as an `in (subquery)` the planner may run the limited,
    // skip-locked pick more than once and change more rows than the batch.
    const rows = await this.sql`
      with picked as materialized (
        -- Replicas' reconcilers share the work instead of waiting on each other's rows.
        select id from messages
        where state = 'done' and body_purged_at is null
          and done_at <= now() - make_interval(secs => ${retentionMs / 1000})
        order by done_at
        limit ${limit}
        for update skip locked)
      update messages m set body = ''::bytea, body_purged_at = now()
      from picked where m.id = picked.id
      returning m.id`
    return rows.length
  }

  /**
   * Recipients due for at least `graceMs` and unclaimed: their job was lost (Redis lost
   * its data) or never made. Oldest first.
   */
  async overdue(graceMs: number, limit: number): Promise<Array<{ id: number; messageId: string; attempts: number }>> {
    const rows = await this.sql<{ id: string; messageId: string; attempts: number }[]>`
      select id::text, message_id as "messageId", attempts
      from message_recipients
      where state in ('queued', 'deferred')
        and (next_attempt_at <= now() - make_interval(secs => ${graceMs / 1000})
             or (next_attempt_at is null and updated_at <= now() - make_interval(secs => ${graceMs / 1000})))
      order by next_attempt_at nulls first
      limit ${limit}`
    return rows.map((r) => ({ ...r, id: Number(r.id) }))
  }

  async depth(): Promise<{ queued: number; deferred: number }> {
    const rows = await this.sql<{ state: string; n: string }[]>`
      select state, count(*)::text as n from message_recipients
      where state in ('queued', 'deferred') group by state`
    const of = (s: string) => Number(rows.find((r) => r.state === s)?.n ?? 0)
    return { queued: of('queued'), deferred: of('deferred') }
  }
}
