import type { Clock } from '@atmos/runtime'
import type { Redis } from 'ioredis'

/** Who asked for a verification, as far as the budget cares. */
export type BudgetKind = 'network' | 'admin'

/**
 * The triggers any account can pull by writing to its own repo (records, identity and
 * account events) share one budget; a member's "check now" in the admin has its own, so
 * that a burst of repo events never blocks it. The scheduler's sweep (one job an
 * attestation an interval, by job id), the operator's run-once and the worker's retries
 * (one chain an attestation, backing off) are bounded where they are made: not counted.
 */
export function budgetKind(trigger: string, isRetry: boolean): BudgetKind | undefined {
  if (isRetry) return undefined
  if (trigger === 'ingest' || trigger === 'identity' || trigger === 'release') return 'network'
  if (trigger === 'admin') return 'admin'
  return undefined
}

// INCR and the expiry in one step: a process that dies between them cannot leave a
// counter that never lapses.
const TAKE = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`

export type BudgetDecision = { ok: true } | { ok: false; windowEndsAt: Date }

/**
 * Verification runs per DID and kind, in fixed windows: a Redis counter per (kind, DID,
 * window) that expires with its window. Redis holds nothing that Postgres needs: losing
 * the counters only grants a fresh window.
 */
export class DidBudget {
  private readonly redis: Redis
  private readonly prefix: string
  private readonly windowMs: number
  private readonly limits: Record<BudgetKind, number>
  private readonly clock: Clock

  constructor(opts: {
    redis: Redis
    prefix: string
    windowMs: number
    limits: Record<BudgetKind, number>
    clock: Clock
  }) {
    this.redis = opts.redis
    this.prefix = opts.prefix
    this.windowMs = opts.windowMs
    this.limits = opts.limits
    this.clock = opts.clock
  }

  /** Takes one run from the DID's budget, or says when the next window opens. */
  async take(did: string, kind: BudgetKind): Promise<BudgetDecision> {
    const window = Math.floor(this.clock.now().getTime() / this.windowMs)
    const key = `${this.prefix}:verify-budget:${kind}:${did}:${window}`
    const used = Number(await this.redis.eval(TAKE, 1, key, String(this.windowMs + 60_000)))
    if (used <= this.limits[kind]) return { ok: true }
    return { ok: false, windowEndsAt: new Date((window + 1) * this.windowMs) }
  }
}
