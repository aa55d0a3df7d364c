import { withTimeout } from '@atmos/runtime'
import type { Redis } from 'ioredis'

// Checks the lockout and takes an in-flight slot in one step, so that neither parallel
// guesses nor parallel relay replicas can slip past either limit together.
const BEGIN = `
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= tonumber(ARGV[1]) then return {-1, redis.call('PTTL', KEYS[1])} end
local inflight = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if inflight > tonumber(ARGV[2]) then
  redis.call('DECR', KEYS[2])
  return {-2, 0}
end
return {1, 0}`

export type AuthGate =
  | { allowed: true }
  | { allowed: false; why: 'locked'; retryInMs: number }
  | { allowed: false; why: 'busy' }

/**
 * Per-IP back-off against password guessing, shared by every relay replica through Redis.
 * Failed logins are counted per address; at `limit` the address is locked out until
 * `windowMs` after its last failure (each failure restarts the window, so a guesser that
 * keeps going stays out). Logins in progress per address are bounded too, so a burst of
 * parallel guesses cannot run ahead of the count: at most limit + concurrency guesses a
 * window. Correct logins never count, so a sender's many connections are not slowed.
 * If Redis does not answer in time the guard lets the login through (and says so): the
 * scrypt cost of each check still slows guessing, and submission must not stop with Redis.
 */
export class AuthGuard {
  private readonly redis: Redis
  private readonly prefix: string
  private readonly limit: number
  private readonly concurrency: number
  private readonly windowMs: number
  private readonly onRedisError: (err: Error) => void

  constructor(opts: {
    redis: Redis
    prefix: string
    limit: number
    concurrency: number
    windowMs: number
    onRedisError: (err: Error) => void
  }) {
    this.redis = opts.redis
    this.prefix = opts.prefix
    this.limit = opts.limit
    this.concurrency = opts.concurrency
    this.windowMs = opts.windowMs
    this.onRedisError = opts.onRedisError
  }

  private keys(ip: string): [string, string] {
    return [`${this.prefix}:relay:auth-failures:${ip}`, `${this.prefix}:relay:auth-inflight:${ip}`]
  }

  /** Before a password is checked: whether to check it at all. Call `finish` after an allowed one. */
  async begin(ip: string): Promise<AuthGate> {
    const [failures, inflight] = this.keys(ip)
    try {
      const [status, ttl] = (await withTimeout(
        this.redis.eval(BEGIN, 2, failures, inflight, this.limit, this.concurrency, 60_000),
        1000,
        'redis',
      )) as [number, number]
      if (status === -1) return { allowed: false, why: 'locked', retryInMs: Math.max(ttl, 1000) }
      if (status === -2) return { allowed: false, why: 'busy' }
      return { allowed: true }
    } catch (err) {
      this.onRedisError(err as Error)
      return { allowed: true }
    }
  }

  /** After the check: frees the slot and counts a failure. */
  async finish(ip: string, ok: boolean): Promise<void> {
    const [failures, inflight] = this.keys(ip)
    const tx = this.redis.multi().decr(inflight)
    if (!ok) tx.incr(failures).pexpire(failures, this.windowMs)
    await withTimeout(tx.exec(), 1000, 'redis').catch((err: Error) => this.onRedisError(err))
  }
}
