import { withTimeout } from '@atmos/runtime'
import type { Redis } from 'ioredis'

/**
 * Per-IP back-off against password guessing, shared by every relay replica through Redis.
 * Each attempt is counted before its password is checked (INCR is atomic, so parallel
 * guesses from one address cannot slip past the limit together) and a success takes its
 * attempt back. The window restarts with every attempt, so a guesser that keeps going
 * stays locked out. If Redis does not answer in time the guard lets the attempt through
 * (and says so): the scrypt cost of each check still slows guessing, and submission must
 * not stop with Redis.
 */
export class AuthGuard {
  private readonly redis: Redis
  private readonly prefix: string
  private readonly limit: number
  private readonly windowMs: number
  private readonly onRedisError: (err: Error) => void

  constructor(opts: {
    redis: Redis
    prefix: string
    limit: number
    windowMs: number
    onRedisError: (err: Error) => void
  }) {
    this.redis = opts.redis
    this.prefix = opts.prefix
    this.limit = opts.limit
    this.windowMs = opts.windowMs
    this.onRedisError = opts.onRedisError
  }

  private key(ip: string): string {
    return `${this.prefix}:relay:auth-attempts:${ip}`
  }

  /** Counts an attempt; returns the milliseconds to wait when the address is over the limit. */
  async attempt(ip: string): Promise<{ allowed: true } | { allowed: false; retryInMs: number }> {
    try {
      const res = await withTimeout(
        this.redis.multi().incr(this.key(ip)).pexpire(this.key(ip), this.windowMs).exec(),
        1000,
        'redis',
      )
      const count = Number(res?.[0]?.[1] ?? 0)
      if (count > this.limit) return { allowed: false, retryInMs: this.windowMs }
      return { allowed: true }
    } catch (err) {
      this.onRedisError(err as Error)
      return { allowed: true }
    }
  }

  /** A correct password: that attempt does not count against the address. */
  async succeeded(ip: string): Promise<void> {
    await withTimeout(this.redis.decr(this.key(ip)), 1000, 'redis').catch((err: Error) => this.onRedisError(err))
  }
}
