import type { Pool } from '@atmos/db'
import { type BounceEvent, type RecordedBounce, recordBounce } from './bounce-events.ts'

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
  memberId: number
  returnPath: string
  body: Buffer
  receivedAt: Date
  /** The earlier of messages.expires_at and received_at + maxAge. */
  expiresAt: Date
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
}

export type Finish =
  | { state: 'delivered' }
  | { state: 'deferred'; retryInMs: number }
  | { state: 'bounced' | 'expired'; bounce: BounceEvent }

export type Finished = {
  /** False when the claim had lapsed and another worker holds the recipient now. */
  applied: boolean
  messageDone: boolean
  bounce?: RecordedBounce
}

export class DeliverySpool {
  private readonly sql: Pool
  private readonly maxAgeMs: number
  private readonly suppressForMs: number

  constructor(opts: { sql: Pool; maxAgeMs: number; suppressForMs: number }) {
    this.sql = opts.sql
    this.maxAgeMs = opts.maxAgeMs
    this.suppressForMs = opts.suppressForMs
  }

  /** Claims the message's recipients that are due (all, or only `ids`) for one attempt each. */
  async claim(messageId: string, ids: number[] | undefined, leaseMs: number): Promise<ClaimedRecipient[]> {
    const only = ids?.length ? ids : null
    const rows = await this.sql<{ id: string; address: string; domain: string; attempts: number; recorded: string }[]>`
      update message_recipients r
      set attempts = r.attempts + 1,
          next_attempt_at = now() + make_interval(secs => ${leaseMs / 1000}),
          updated_at = now()
      where r.message_id = ${messageId}
        and (${only}::bigint[] is null or r.id = any(${only}::bigint[]))
        and r.state in ('queued', 'deferred')
        and (r.next_attempt_at is null or r.next_attempt_at <= now())
      returning r.id::text, r.address, r.domain, r.attempts,
        (select count(*) from delivery_attempts a where a.recipient_id = r.id)::text as recorded`
    return rows.map((r) => ({
      id: Number(r.id),
      messageId,
      address: r.address,
      domain: r.domain,
      attempt: r.attempts,
      lapsed: Math.max(0, r.attempts - 1 - Number(r.recorded)),
    }))
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

  async message(id: string): Promise<SpooledMessage | undefined> {
    const [row] = await this.sql<
      {
        id: string
        memberId: string
        returnPath: string
        body: Buffer
        receivedAt: number
        expiresAt: number
      }[]
    >`
      select id, member_id::text as "memberId", return_path as "returnPath", body,
             (extract(epoch from received_at) * 1000)::float8 as "receivedAt",
             (extract(epoch from least(expires_at, received_at + make_interval(secs => ${this.maxAgeMs / 1000})))
               * 1000)::float8 as "expiresAt"
      from messages where id = ${id}`
    if (!row) return undefined
    // Epoch milliseconds: drizzle's wrapping of the pool turns timestamps into bare text.
    return {
      ...row,
      memberId: Number(row.memberId),
      receivedAt: new Date(row.receivedAt),
      expiresAt: new Date(row.expiresAt),
    }
  }

  /** The database's clock, which leases and expiry are measured by. */
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

  async now(): Promise<Date> {
    const [row] = await this.sql<{ now: number }[]>`select (extract(epoch from now()) * 1000)::float8 as now`
    return row ? new Date(row.now) : new Date()
  }

  /**
   * Records an attempt (when one was made) and its consequence in one transaction: the
   * recipient's new state, the bounce event and suppression, and the message marked done
   * when no recipient is left to try. Fenced by the claim: a worker whose claim lapsed
   * records its attempt but changes nothing.
   */
  async finish(r: ClaimedRecipient, attempt: AttemptRecord | undefined, finish: Finish): Promise<Finished> {
    return this.sql.begin(async (tx) => {
      if (attempt) {
        await tx`
          insert into delivery_attempts
            (recipient_id, message_id, started_at, duration_ms, mx_host, mx_address, reply_code, enhanced_status, reply, outcome)
          values
            (${r.id}, ${r.messageId}, ${attempt.startedAt.toISOString()}::timestamptz, ${attempt.durationMs}, ${attempt.mxHost ?? null},
             ${attempt.mxAddress ?? null}, ${attempt.replyCode ?? null}, ${attempt.enhancedStatus ?? null},
             ${attempt.reply.slice(0, 2000)}, ${attempt.outcome})`
      }
      const retrySecs = finish.state === 'deferred' ? finish.retryInMs / 1000 : null
      const updated = await tx`
        update message_recipients
        set state = ${finish.state},
            attempts = attempts - ${attempt ? 0 : 1},
            next_attempt_at = case when ${retrySecs}::float8 is null then null
                                   else now() + make_interval(secs => ${retrySecs}::float8) end,
            last_reply = coalesce(${attempt?.reply.slice(0, 2000) ?? null}, last_reply),
            updated_at = now()
        where id = ${r.id} and attempts = ${r.attempt} and state in ('queued', 'deferred')
        returning id`
      if (updated.length === 0) return { applied: false, messageDone: false }
      const bounce =
        finish.state === 'bounced' || finish.state === 'expired'
          ? await recordBounce(tx, finish.bounce, { suppressForMs: this.suppressForMs })
          : undefined
      const done = await tx`
        update messages set state = 'done', done_at = now()
        where id = ${r.messageId} and state = 'queued'
          and not exists (select 1 from message_recipients
                          where message_id = ${r.messageId} and state in ('queued', 'deferred'))
        returning id`
      return { applied: true, messageDone: done.length > 0, ...(bounce ? { bounce } : {}) }
    }) as Promise<Finished>
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
