import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'

/** How long an owner's liveness key outlives its last renewal: a killed process's slots are free after this. */
export const OWNER_TTL_MS = 4000
/** How often a live owner renews its liveness key. */
export const OWNER_RENEW_MS = 1000
/** How long an owner seen alive is not asked about again (by a process waiting for a full site's slot). */
const ALIVE_CACHE_MS = 500

/**
 * One process's claim to the leased slots it holds (site connections, member connections).
 * A slot's lease is renewed every third of it (tens of seconds), which alone would leave a
 * killed process's slots taken for that long; so every slot also names its owner, and the
 * owner keeps a short-lived liveness key in Redis while it holds any slot. A process that
 * finds a limit full asks whether the holders' owners are alive, and the acquire script
 * drops the slots of those that are not: a kill -9'd owner's slots are free within seconds,
 * while a live but slow owner keeps its slots as long as it renews (once a second).
 *
 * Liveness keys are single keys, read and written one per command and never inside a
 * script, so they may live in any hash slot of a Redis Cluster (see SlotOwner.deadAmong).
 */
export class SlotOwner {
  /** Written into every slot token this process takes: `<id>/<token>`. Hex, so it holds no `/`. */
  readonly id = randomBytes(8).toString('hex')
  private readonly redis: Redis
  private readonly prefix: string
  private readonly held = new Set<string>()
  private timer: NodeJS.Timeout | undefined
  private announced: Promise<void> | undefined
  private renewing = false
  /** Other owners seen alive lately, until when. */
  private readonly seenAlive = new Map<string, number>()

  constructor(opts: { redis: Redis; prefix: string }) {
    this.redis = opts.redis
    this.prefix = `${opts.prefix}:slot-owner`
  }

  private key(owner: string): string {
    return `${this.prefix}:${owner}`
  }

  /** The token stored in Redis for a slot this process takes. */
  token(token: string): string {
    return `${this.id}/${token}`
  }

  /**
   * Records that a slot is about to be taken, and resolves once this owner's liveness key
   * exists: a slot must never name an owner that other processes would find dead.
   */
  async holding(slot: string): Promise<void> {
    this.held.add(slot)
    if (!this.timer) {
      this.timer = setInterval(() => void this.renew(), OWNER_RENEW_MS)
      this.timer.unref()
    }
    this.announced ??= this.announce()
    try {
      await this.announced
    } catch (err) {
      // Redis did not take the key: whoever retries announces again.
      this.announced = undefined
      this.released(slot)
      throw err
    }
  }

  /** The slot is no longer held (released, never taken, or found gone). */
  released(slot: string): void {
    this.held.delete(slot)
  }

  private async announce(): Promise<void> {
    await this.redis.set(this.key(this.id), '1', 'PX', OWNER_TTL_MS)
  }

  private async renew(): Promise<void> {
    if (this.held.size === 0) {
      // The key lapses by itself: an owner holding nothing needs no liveness. Stopping
      // only at a beat keeps a process that polls for a slot from announcing at each poll.
      clearInterval(this.timer)
      this.timer = undefined
      this.announced = undefined
      return
    }
    // One renewal at a time: while Redis is down they would only queue up.
    if (this.renewing) return
    this.renewing = true
    try {
      await this.announce()
    } catch {
      // Redis unreachable: the key may lapse and our slots be taken; renewals of each
      // slot then find it gone and give the connection up or take the slot again.
    } finally {
      this.renewing = false
    }
  }

  /**
   * The owners among `owners` whose liveness key is gone. One EXISTS a key, pipelined, so
   * that the keys may be in different cluster hash slots. Token formats older than owner ids
   * (no `/`) are never reported: their leases still lapse.
   */
  async deadAmong(owners: string[]): Promise<string[]> {
    const now = Date.now()
    const unknown = [...new Set(owners)].filter((o) => o && o !== this.id && (this.seenAlive.get(o) ?? 0) <= now)
    if (!unknown.length) return []
    const pipeline = this.redis.pipeline()
    for (const o of unknown) pipeline.exists(this.key(o))
    const results = (await pipeline.exec()) ?? []
    const dead: string[] = []
    if (this.seenAlive.size > 10_000) this.seenAlive.clear()
    unknown.forEach((o, i) => {
      const [err, exists] = results[i] ?? [new Error('no reply'), 0]
      if (err) throw err
      if (exists === 0) dead.push(o)
      else this.seenAlive.set(o, now + ALIVE_CACHE_MS)
    })
    return dead
  }
}
