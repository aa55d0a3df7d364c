import { withTimeout } from '@atmos/runtime'
import type { Redis } from 'ioredis'

// Requests per API key in fixed windows, counted in Redis so that every replica shares the
// count. While Redis is away each process counts alone (the limit then applies per process):
// the send API keeps working on Postgres alone, as SMTP submission does.

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number }

export class KeyRateLimit {
  private readonly redis: Redis
  private readonly prefix: string
  private readonly limit: number
  private readonly windowMs: number
  private readonly onRedisError: (err: Error) => void
  private readonly local = new Map<string, number>()

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

  async take(keyId: string, now = Date.now()): Promise<RateDecision> {
    const window = Math.floor(now / this.windowMs)
    const retryAfterSeconds = Math.max(1, Math.ceil(((window + 1) * this.windowMs - now) / 1000))
    const name = `${this.prefix}:send-api:rate:${keyId}:${window}`
    let count: number
    try {
      if (this.redis.status !== 'ready') throw new Error(`redis ${this.redis.status}`)
      const res = await withTimeout(this.redis.multi().incr(name).pexpire(name, this.windowMs).exec(), 500, 'redis')
      const incr = res?.[0]
      if (!incr || incr[0]) throw (incr?.[0] as Error) ?? new Error('no reply')
      count = Number(incr[1])
    } catch (err) {
      this.onRedisError(err as Error)
      count = this.countLocally(name, window)
    }
    return count > this.limit ? { allowed: false, retryAfterSeconds } : { allowed: true }
  }

  private countLocally(name: string, window: number): number {
    // Old windows are dropped as new ones start, so the map holds at most the live keys.
    for (const k of this.local.keys()) if (!k.endsWith(`:${window}`)) this.local.delete(k)
    const n = (this.local.get(name) ?? 0) + 1
    this.local.set(name, n)
    return n
  }
}
