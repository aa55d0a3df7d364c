import type { Redis } from 'ioredis'
import { LeasedSlots } from '../delivery/site-limiter.ts'

/**
 * Authenticated connections per member across every relay replica: one leased slot in
 * Redis per connection, renewed while it is open and released when it closes. A replica
 * that dies frees its members' slots within seconds (its owner liveness key lapses; see
 * SlotOwner), and when the leases run out at the latest. If Redis does not
 * answer, this replica counts alone (a limit, not a security boundary: mail is still
 * authenticated, capped and spooled).
 */
export class MemberConnections {
  private readonly slots: LeasedSlots
  private readonly prefix: string
  private readonly leaseMs: number
  private readonly local = new Map<number, number>()
  private readonly held = new Map<string, { memberId: number; timer: NodeJS.Timeout | undefined }>()
  private readonly onRedisError: (err: Error) => void

  constructor(opts: { redis: Redis; prefix: string; leaseMs: number; onRedisError: (err: Error) => void }) {
    this.slots = new LeasedSlots({ redis: opts.redis, prefix: opts.prefix })
    this.prefix = `${opts.prefix}:submission:member`
    this.leaseMs = opts.leaseMs
    this.onRedisError = opts.onRedisError
  }

  private key(memberId: number): string {
    return `${this.prefix}:{${memberId}}:connections`
  }

  /** Takes a connection slot for the member; false when `limit` are held already. */
  async acquire(memberId: number, token: string, limit: number): Promise<boolean> {
    let shared: boolean | undefined
    const key = this.key(memberId)
    const taking = this.slots.acquire(key, token, limit, this.leaseMs)
    try {
      shared = await bounded(taking)
    } catch (err) {
      this.onRedisError(err as Error)
      // Commands wait while ioredis reconnects: a slot taken after we gave up is given back.
      taking.then((took) => (took ? this.slots.release(key, token) : undefined)).catch(() => {})
    }
    const open = this.local.get(memberId) ?? 0
    if (shared === false || (shared === undefined && open >= limit)) return false
    this.local.set(memberId, open + 1)
    const timer =
      shared === undefined
        ? undefined
        : setInterval(
            () => void this.slots.renew(key, token, this.leaseMs).catch(() => {}),
            Math.max(100, Math.floor(this.leaseMs / 3)),
          )
    timer?.unref()
    this.held.set(token, { memberId, timer })
    return true
  }

  release(token: string): void {
    const h = this.held.get(token)
    if (!h) return
    this.held.delete(token)
    clearInterval(h.timer)
    const left = (this.local.get(h.memberId) ?? 1) - 1
    if (left > 0) this.local.set(h.memberId, left)
    else this.local.delete(h.memberId)
    if (h.timer) void this.slots.release(this.key(h.memberId), token).catch(() => {})
  }
}

function bounded<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('redis did not answer in time')), 1000)
    }),
  ]).finally(() => clearTimeout(timer))
}
