import { randomUUID } from 'node:crypto'
import { withTimeout } from '@atmos/runtime'
import { addressKey } from '@atmos/smtp-limits'
import type { Redis } from 'ioredis'

// Checks the lockout and takes a place among the logins being checked in one step, so that
// neither parallel guesses nor parallel relay replicas can slip past either limit together.
// A place is a lease (a sorted set of tokens scored by expiry, on Redis' clock): a process
// killed in the middle of a check never gives its place back nor renews it, and the lease
// lapses instead.
// KEYS: failures, checks. ARGV: limit, concurrency, leaseMs, token.
const BEGIN = `
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= tonumber(ARGV[1]) then return {-1, redis.call('PTTL', KEYS[1])} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return {-2, 0} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {1, 0}`

// KEYS: checks. ARGV: token, leaseMs. Extends a place still held.
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

export type AuthGate =
  | { allowed: true; ticket: AuthTicket }
  | { allowed: false; why: 'locked'; retryInMs: number }
  | { allowed: false; why: 'busy' }

/** A login allowed to be checked; hand it back to `finish`. */
export type AuthTicket = { key: string; token: string; shared: boolean; renewal?: NodeJS.Timeout }

/** What the check found: a right or wrong password, or nothing (it could not be checked). */
export type AuthOutcome = 'ok' | 'failed' | 'unchecked'

/**
 * Per-address back-off against password guessing, shared by every relay replica through
 * Redis. An address is an IPv4 address or an IPv6 /64 (whoever holds one address of a /64
 * usually holds all of it). Failed logins are counted per address; at `limit` the address
 * is locked out until `windowMs` after its last failure (each failure restarts the window,
 * so a guesser that keeps going stays out). Logins being checked per address are bounded
 * too, so a burst of parallel guesses cannot run ahead of the count: at most limit +
 * concurrency guesses a window. Correct logins, and logins that could not be checked (the
 * database failed), never count.
 * Without Redis the same limits hold per process, from counts this process keeps anyway.
 */
export class AuthGuard {
  private readonly redis: Redis
  private readonly prefix: string
  private readonly limit: number
  private readonly concurrency: number
  private readonly windowMs: number
  private readonly leaseMs: number
  private readonly onRedisError: (err: Error) => void
  private readonly local = new LocalAuthCounts()

  constructor(opts: {
    redis: Redis
    prefix: string
    limit: number
    concurrency: number
    windowMs: number
    leaseMs: number
    onRedisError: (err: Error) => void
  }) {
    this.redis = opts.redis
    this.prefix = opts.prefix
    this.limit = opts.limit
    this.concurrency = opts.concurrency
    this.windowMs = opts.windowMs
    this.leaseMs = opts.leaseMs
    this.onRedisError = opts.onRedisError
  }

  private keys(key: string): [string, string] {
    return [`${this.prefix}:relay:auth-failures:${key}`, `${this.prefix}:relay:auth-checks:${key}`]
  }

  /** Before a password is checked: whether to check it at all. Call `finish` with the ticket of an allowed one. */
  async begin(ip: string): Promise<AuthGate> {
    const key = addressKey(ip)
    const token = randomUUID()
    if (this.redis.status === 'ready') {
      const [failures, checks] = this.keys(key)
      try {
        const [status, ttl] = (await withTimeout(
          this.redis.eval(BEGIN, 2, failures, checks, this.limit, this.concurrency, this.leaseMs, token),
          1000,
          'redis',
        )) as [number, number]
        if (status === -1) return { allowed: false, why: 'locked', retryInMs: Math.max(ttl, 1000) }
        if (status === -2) return { allowed: false, why: 'busy' }
        this.local.begin(key, token, Number.POSITIVE_INFINITY)
        // Renewed while the check runs (a slow database must not free its place); only a dead process stops.
        const renewal = setInterval(
          () => void this.redis.eval(RENEW, 1, checks, token, this.leaseMs).catch(() => {}),
          Math.max(100, Math.floor(this.leaseMs / 3)),
        )
        renewal.unref()
        return { allowed: true, ticket: { key, token, shared: true, renewal } }
      } catch (err) {
        this.onRedisError(err as Error)
      }
    } else this.onRedisError(new Error(`redis is ${this.redis.status}`))
    // Redis is away: this process alone, with the same limits.
    const lockedFor = this.local.lockedFor(key, this.limit)
    if (lockedFor > 0) return { allowed: false, why: 'locked', retryInMs: Math.max(lockedFor, 1000) }
    if (!this.local.begin(key, token, this.concurrency)) return { allowed: false, why: 'busy' }
    return { allowed: true, ticket: { key, token, shared: false } }
  }

  /** After the check: frees the place and counts a failure. */
  async finish(ticket: AuthTicket, outcome: AuthOutcome): Promise<void> {
    clearInterval(ticket.renewal)
    this.local.finish(ticket.key, ticket.token, outcome === 'failed', this.windowMs)
    if (!ticket.shared) return
    const [failures, checks] = this.keys(ticket.key)
    const tx = this.redis.multi().zrem(checks, ticket.token)
    if (outcome === 'failed') tx.incr(failures).pexpire(failures, this.windowMs)
    await withTimeout(tx.exec(), 1000, 'redis').catch((err: Error) => this.onRedisError(err))
  }
}

/**
 * The counts of one process: kept for every login, consulted when Redis is away. Failures
 * lapse `windowMs` after the last one, as in Redis.
 */
class LocalAuthCounts {
  private readonly entries = new Map<string, { failures: number; until: number; checks: Set<string> }>()

  lockedFor(key: string, limit: number): number {
    const e = this.entries.get(key)
    if (!e || e.until <= Date.now() || e.failures < limit) return 0
    return e.until - Date.now()
  }

  begin(key: string, token: string, concurrency: number): boolean {
    const e = this.entry(key)
    if (e.checks.size >= concurrency) return false
    e.checks.add(token)
    return true
  }

  finish(key: string, token: string, failed: boolean, windowMs: number): void {
    const e = this.entry(key)
    e.checks.delete(token)
    if (failed) {
      e.failures = e.until > Date.now() ? e.failures + 1 : 1
      e.until = Date.now() + windowMs
    }
    if (e.checks.size === 0 && e.until <= Date.now()) this.entries.delete(key)
  }

  private entry(key: string) {
    let e = this.entries.get(key)
    if (!e) {
      if (this.entries.size >= 100_000) this.sweep()
      e = { failures: 0, until: 0, checks: new Set() }
      this.entries.set(key, e)
    }
    return e
  }

  private sweep(): void {
    const now = Date.now()
    for (const [key, e] of this.entries) if (e.checks.size === 0 && e.until <= now) this.entries.delete(key)
  }
}
