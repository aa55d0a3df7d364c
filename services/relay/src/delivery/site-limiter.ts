import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'
import { SlotOwner } from './slot-owner.ts'

// Per-site shaping shared by every delivery process, kept in Redis and changed only by
// these scripts, each atomic. bullmq's free edition has no group rate limits, so the
// connection count is a counting semaphore whose slots are leases (a sorted set scored
// by expiry): a process killed while holding slots stops renewing them and they free
// themselves. Each slot also names its owner process (SlotOwner), so that a full limit
// whose holders include a dead process frees that process's slots at once instead of a
// lease later. Time is Redis' own clock, so workers' clocks need not agree.

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/**
 * KEYS: slots, slow. ARGV: token (`<owner>/<token>`), limit, leaseMs, slowLimit, then the
 * owners found dead, whose slots are dropped first. 1 when the slot is taken; when the
 * limit is full, the distinct owners of the slots held, for the caller to ask which of
 * them are alive (their liveness keys are not declared here: they may be in other hash slots).
 */
const ACQUIRE = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if #ARGV > 4 then
  local dead = {}
  for i = 5, #ARGV do dead[ARGV[i]] = true end
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local owner = string.match(m, '^([^/]+)/')
    if owner and dead[owner] then redis.call('ZREM', KEYS[1], m) end
  end
end
local limit = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then limit = math.min(limit, tonumber(ARGV[4])) end
if redis.call('ZCARD', KEYS[1]) >= limit then
  local owners, seen = {}, {}
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local owner = string.match(m, '^([^/]+)/')
    if owner and not seen[owner] then
      seen[owner] = true
      owners[#owners + 1] = owner
    end
  end
  return owners
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`

/** KEYS: slots. ARGV: token, leaseMs. 1 while the slot is still held. */
const RENEW = `${NOW}
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held or tonumber(held) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

/**
 * KEYS: bucket, slow. ARGV: rate per second. A token bucket (burst 1) that only applies
 * while the site is slowed down: 0 to send now, else milliseconds to wait; -1 when the
 * site is not slowed down at all.
 */
const TAKE_TOKEN = `if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
${NOW}
local rate = tonumber(ARGV[1])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '1')
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or tostring(now))
tokens = math.min(1, tokens + (now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(2000 / rate) + 1000)
return wait`

class Script {
  private readonly source: string
  private readonly sha: string

  constructor(source: string) {
    this.source = source
    this.sha = createHash('sha1').update(source).digest('hex')
  }

  async run(redis: Redis, keys: string[], args: Array<string | number>): Promise<number> {
    return (await this.reply(redis, keys, args)) as number
  }

  async reply(redis: Redis, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args)
    } catch (err) {
      if (!String((err as Error).message).includes('NOSCRIPT')) throw err
      return await redis.eval(this.source, keys.length, ...keys, ...args)
    }
  }
}

const acquire = new Script(ACQUIRE)
const renew = new Script(RENEW)
const takeToken = new Script(TAKE_TOKEN)

/**
 * Takes a slot of `keys[0]` for `owner`, dropping the slots of dead owners when the limit
 * is full. Two round trips (and an EXISTS per unknown holder) only when the limit is full.
 */
async function acquireSlot(
  redis: Redis,
  owner: SlotOwner,
  keys: [slots: string, slow: string],
  token: string,
  args: { limit: number; leaseMs: number; slowLimit: number },
): Promise<boolean> {
  const slot = `${keys[0]}\n${token}`
  await owner.holding(slot)
  try {
    const argv = [owner.token(token), args.limit, args.leaseMs, args.slowLimit]
    let reply = await acquire.reply(redis, keys, argv)
    if (Array.isArray(reply)) {
      const dead = await owner.deadAmong(reply as string[])
      if (dead.length) reply = await acquire.reply(redis, keys, [...argv, ...dead])
    }
    if (reply === 1) return true
  } catch (err) {
    owner.released(slot)
    throw err
  }
  owner.released(slot)
  return false
}

/**
 * A counting semaphore whose slots are leases, for other limits shared across processes
 * (a member's submission connections): the same scripts as the sites', without slow-down.
 */
export class LeasedSlots {
  private readonly redis: Redis
  private readonly owner: SlotOwner

  constructor(opts: { redis: Redis; prefix: string }) {
    this.redis = opts.redis
    this.owner = new SlotOwner(opts)
  }

  /** Takes a slot of `key` when fewer than `limit` are held. */
  acquire(key: string, token: string, limit: number, leaseMs: number): Promise<boolean> {
    // The slow-down key of a site; here one that never exists.
    return acquireSlot(this.redis, this.owner, [key, `${key}:never`], token, { limit, leaseMs, slowLimit: limit })
  }

  async renew(key: string, token: string, leaseMs: number): Promise<boolean> {
    return (await renew.run(this.redis, [key], [this.owner.token(token), leaseMs])) === 1
  }

  async release(key: string, token: string): Promise<void> {
    this.owner.released(`${key}\n${token}`)
    await this.redis.zrem(key, this.owner.token(token))
  }
}

export type SlowDown = { forMs: number; connections: number; ratePerSecond: number }

/**
 * How long this process trusts that a site is not slowed down before it asks Redis again.
 * A slow-down set by another process is obeyed this much later at worst; it saves a
 * round trip to Redis for every message to a site in good standing, the usual case.
 */
export const SLOW_DOWN_RECHECK_MS = 1000

export class SiteLimiter {
  private readonly redis: Redis
  private readonly prefix: string
  private readonly leaseMs: number
  private readonly slow: SlowDown
  private readonly owner: SlotOwner
  /** Sites seen not slowed down, until when that is trusted (see SLOW_DOWN_RECHECK_MS). */
  private readonly notSlowUntil = new Map<string, number>()

  constructor(opts: { redis: Redis; prefix: string; leaseMs: number; slowDown: SlowDown }) {
    this.redis = opts.redis
    this.prefix = `${opts.prefix}:delivery:site`
    this.leaseMs = opts.leaseMs
    this.slow = opts.slowDown
    this.owner = new SlotOwner({ redis: opts.redis, prefix: opts.prefix })
  }

  private key(site: string, what: string): string {
    return `${this.prefix}:{${site}}:${what}`
  }

  /** Takes one connection slot of the site if fewer than `limit` are held (or held by dead processes). */
  async tryAcquire(site: string, token: string, limit: number): Promise<boolean> {
    const keys: [string, string] = [this.key(site, 'slots'), this.key(site, 'slow')]
    return acquireSlot(this.redis, this.owner, keys, token, {
      limit,
      leaseMs: this.leaseMs,
      slowLimit: this.slow.connections,
    })
  }

  /** Extends a held slot's lease; false when it had already expired (and may be someone else's now). */
  async renew(site: string, token: string): Promise<boolean> {
    return (await renew.run(this.redis, [this.key(site, 'slots')], [this.owner.token(token), this.leaseMs])) === 1
  }

  async release(site: string, token: string): Promise<void> {
    this.owner.released(`${this.key(site, 'slots')}\n${token}`)
    await this.redis.zrem(this.key(site, 'slots'), this.owner.token(token))
  }

  /** The site deferred for reputation: fewer connections and a message rate for a while. */
  async slowDown(site: string): Promise<void> {
    this.notSlowUntil.delete(site)
    await this.redis.set(this.key(site, 'slow'), '1', 'PX', this.slow.forMs)
  }

  async isSlowedDown(site: string): Promise<boolean> {
    return (await this.redis.exists(this.key(site, 'slow'))) === 1
  }

  /** Milliseconds to wait before the next message to the site (0 unless it is slowed down). */
  async messageDelay(site: string): Promise<number> {
    if ((this.notSlowUntil.get(site) ?? 0) > Date.now()) return 0
    const keys = [this.key(site, 'bucket'), this.key(site, 'slow')]
    const wait = await takeToken.run(this.redis, keys, [this.slow.ratePerSecond])
    if (wait >= 0) return wait
    if (this.notSlowUntil.size > 10_000) this.notSlowUntil.clear()
    this.notSlowUntil.set(site, Date.now() + SLOW_DOWN_RECHECK_MS)
    return 0
  }

  /** Slots of the site held now (for tests and metrics). */
  async held(site: string): Promise<number> {
    const now = Number((await this.redis.time())[0]) * 1000
    return this.redis.zcount(this.key(site, 'slots'), now, '+inf')
  }
}
