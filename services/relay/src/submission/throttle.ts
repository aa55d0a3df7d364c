import type { Pool } from '@atmos/db'
import {
  decideThrottle,
  describeThrottle,
  SPIKE_HISTORY_DAYS,
  type ThrottleDecision,
  type ThrottleFigures,
  type ThrottleRule,
} from '@atmos/reputation'
import { type BaseContext, type Logger, withTimeout } from '@atmos/runtime'
import { Counter, Histogram } from 'prom-client'
import type { ThrottleConfig } from './throttle-config.ts'
import { ThrottleRecorder } from './throttle-record.ts'

// The relay's side of the throttle rules (packages/reputation/src/throttle-rules.ts decides):
// it reads a sending domain's figures from the spool, caches them, records decisions, and
// answers one question for SMTP submission and the HTTP send API alike: may this domain's
// transaction take these recipients now, and if not, what does the 451 say.

const HOUR = 3_600_000
const DAY = 24 * HOUR
/**
 * The history (the busiest hour in the 14 days before the last 24 hours) moves by whole
 * hours and never includes today, so it is asked again only this often; the hour's counts
 * are asked again every `cacheTtl`.
 */
const HISTORY_TTL = 10 * 60_000
/** A figures query that takes longer is abandoned, and the check lets the recipient through. */
const QUERY_TIMEOUT = 2000
/** Domains whose figures are kept; past it, stale entries are dropped first. */
const MAX_CACHED_DOMAINS = 10_000

export type ThrottleCheck = {
  memberId: number
  domainId: number
  domain: string
  /** The recipient domains of the transaction so far, the one being checked included (lower case). */
  recipientDomains: readonly string[]
  now?: Date
}

export type ThrottleResult = {
  /** What to answer (after `451 4.7.1 `) when an enforced rule fires; null: go on. */
  defer: { rule: ThrottleRule; text: string } | null
  /** Every rule that fired, enforced or in shadow (recorded at most once an interval). */
  decisions: ThrottleDecision[]
}

type Registry = BaseContext['metrics']

type Cached = {
  liveAt: number
  hourRecipients: number
  hourDomains: number
  historyAt: number
  peakHour: number
  inflight?: Promise<Cached>
}

/** The lower-cased domain of each recipient address (the part after its last @). */
export function recipientDomainsOf(addresses: readonly string[]): string[] {
  return addresses.map((a) => a.slice(a.lastIndexOf('@') + 1).toLowerCase())
}

/**
 * Counts are cached per domain for `cacheTtl` (one query per domain at most that often,
 * however many recipients arrive); concurrent checks of a domain whose counts are stale wait
 * for the same query. The transaction's own recipients are added to the cached counts, so a
 * rule fires at the recipient that crosses it; other sessions' recipients since the last
 * query are not seen until the next one (a burst may pass a threshold by at most what the
 * domain sends in `cacheTtl`, on each replica).
 */
export class ThrottleRules {
  private readonly sql: Pool
  private readonly config: ThrottleConfig
  private readonly logger: Logger
  private readonly cache = new Map<number, Cached>()
  private readonly recorder: ThrottleRecorder
  private readonly queryTime: Histogram<'kind'>
  private readonly fired: Counter<'rule' | 'mode'>
  /** Queries run so far (tests and benchmarks check the cache). */
  queries = 0
  private lastWarning = 0

  constructor(opts: { sql: Pool; config: ThrottleConfig; logger: Logger; metrics: Registry }) {
    this.sql = opts.sql
    this.config = opts.config
    this.logger = opts.logger
    this.recorder = new ThrottleRecorder(opts.sql, opts.config.recordInterval, opts.logger)
    this.queryTime = new Histogram({
      name: 'atmos_relay_throttle_query_seconds',
      help: 'Time of one throttle figures query, by kind (hour: the last hour; history: with the 14-day peak)',
      labelNames: ['kind'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [opts.metrics],
    })
    this.fired = new Counter({
      name: 'atmos_relay_throttle_decisions_total',
      help: 'Throttle rule firings at submission checks, by rule and mode (shadow: would have deferred)',
      labelNames: ['rule', 'mode'],
      registers: [opts.metrics],
    })
  }

  /** Whether any rule is on: with none, check() asks nothing. */
  get enabled(): boolean {
    return this.config.spike.mode !== 'off' || this.config.spray.mode !== 'off'
  }

  async check(c: ThrottleCheck): Promise<ThrottleResult> {
    if (!this.enabled) return { defer: null, decisions: [] }
    const now = c.now ?? new Date()
    let base: Cached
    try {
      base = await this.figures(c.domainId, now.getTime())
    } catch (err) {
      // Fail open: the rules are a brake, not a gate; the spool's own failure answers if Postgres is gone.
      // Said once per 10 s at most: every RCPT of an outage would say it again.
      if (Date.now() - this.lastWarning >= 10_000) {
        this.lastWarning = Date.now()
        this.logger.warn(
          { err: (err as Error).message, domain: c.domain },
          'throttle figures unavailable; not throttling',
        )
      }
      return { defer: null, decisions: [] }
    }
    const figures: ThrottleFigures = {
      hourRecipients: base.hourRecipients + c.recipientDomains.length,
      // An upper bound: the transaction's domains may already be among the hour's.
      hourDomains: base.hourDomains + new Set(c.recipientDomains).size,
      peakHour: base.peakHour,
    }
    const decisions = decideThrottle(this.config, figures)
    if (!decisions.length) return { defer: null, decisions }
    for (const d of decisions) this.fired.inc({ rule: d.rule, mode: d.mode })
    await this.recorder.record(c, decisions, now)
    const enforced = decisions.find((d) => d.mode === 'enforce')
    return { defer: enforced ? { rule: enforced.rule, text: describeThrottle(c.domain, enforced) } : null, decisions }
  }

  /** The domain's counts, from the cache while fresh, else from one query shared by concurrent checks. */
  private async figures(domainId: number, now: number): Promise<Cached> {
    const hit = this.cache.get(domainId)
    if (hit && now - hit.liveAt < this.config.cacheTtl) return hit
    if (hit?.inflight) return hit.inflight
    const withHistory = !hit || now - hit.historyAt >= HISTORY_TTL
    const inflight = this.query(domainId, now, withHistory).then(
      (f) => {
        const next: Cached = {
          liveAt: now,
          hourRecipients: f.recipients,
          hourDomains: f.domains,
          historyAt: withHistory ? now : (hit?.historyAt ?? now),
          peakHour: withHistory ? f.peak : (hit?.peakHour ?? 0),
        }
        this.remember(domainId, next)
        return next
      },
      (err: unknown) => {
        if (hit) delete hit.inflight
        else this.cache.delete(domainId)
        throw err
      },
    )
    if (hit) hit.inflight = inflight
    else this.cache.set(domainId, { liveAt: 0, hourRecipients: 0, hourDomains: 0, historyAt: 0, peakHour: 0, inflight })
    return inflight
  }

  private remember(domainId: number, entry: Cached): void {
    this.cache.delete(domainId)
    if (this.cache.size >= MAX_CACHED_DOMAINS) {
      // Insertion order is refresh order: the first entries are the stalest.
      for (const key of this.cache.keys()) {
        if (this.cache.size < MAX_CACHED_DOMAINS * 0.9) break
        if (!this.cache.get(key)?.inflight) this.cache.delete(key)
      }
    }
    this.cache.set(domainId, entry)
  }

  /**
   * One statement: the last hour's recipients and their distinct domains (through
   * messages_domain_idx and each copy's one recipient row), and with `withHistory` the
   * busiest clock hour from 15 days ago to 24 hours ago. The history ends a day back so
   * that a spike, once admitted up to its limit, does not become the history that raises
   * the limit within the hour: a domain's limit can grow by `factor` a day at most.
   */
  private async query(
    domainId: number,
    now: number,
    withHistory: boolean,
  ): Promise<{ recipients: number; domains: number; peak: number }> {
    this.queries++
    // ISO text, cast in SQL: drizzle's pool (ctx.db.$client) serializes no Date parameters.
    const since = new Date(now - HOUR).toISOString()
    const stop = this.queryTime.startTimer({ kind: withHistory ? 'history' : 'hour' })
    try {
      const run = withHistory
        ? this.sql<{ recipients: number; domains: number; peak: number }[]>`
            select h.recipients, h.domains, p.peak
            from (select count(*)::int as recipients, count(distinct r.domain)::int as domains
                  from messages m join message_recipients r on r.message_id = m.id
                  where m.domain_id = ${domainId} and m.received_at > ${since}::timestamptz) h,
                 (select coalesce(max(n), 0)::int as peak
                  from (select count(*) as n from messages
                        where domain_id = ${domainId}
                          and received_at >= ${new Date(now - (SPIKE_HISTORY_DAYS + 1) * DAY).toISOString()}::timestamptz
                          and received_at < ${new Date(now - DAY).toISOString()}::timestamptz
                        group by date_trunc('hour', received_at)) per_hour) p`
        : this.sql<{ recipients: number; domains: number; peak: number }[]>`
            select count(*)::int as recipients, count(distinct r.domain)::int as domains, 0 as peak
            from messages m join message_recipients r on r.message_id = m.id
            where m.domain_id = ${domainId} and m.received_at > ${since}::timestamptz`
      const [row] = await withTimeout(run, QUERY_TIMEOUT, 'throttle figures')
      return row ?? { recipients: 0, domains: 0, peak: 0 }
    } finally {
      stop()
    }
  }
}
