/**
 * A fixed window per key (the client address): at most `limit` hits per `windowMs`. Each
 * replica counts its own, which bounds what one address can make us do (identity lookups,
 * PAR requests to PDSes) without a shared store.
 */
export class WindowLimiter {
  private readonly hits = new Map<string, { start: number; n: number }>()

  private readonly limit: number
  private readonly windowMs: number
  private readonly now: () => number

  constructor(limit: number, windowMs: number, now: () => number = Date.now) {
    this.limit = limit
    this.windowMs = windowMs
    this.now = now
  }

  /** Counts a hit; returns the seconds to wait when over the limit, else 0. */
  take(key: string): number {
    const t = this.now()
    if (this.hits.size > 10_000) this.sweep(t)
    const w = this.hits.get(key)
    if (!w || t - w.start >= this.windowMs) {
      this.hits.set(key, { start: t, n: 1 })
      return 0
    }
    if (w.n >= this.limit) return Math.max(1, Math.ceil((w.start + this.windowMs - t) / 1000))
    w.n++
    return 0
  }

  private sweep(t: number) {
    for (const [k, w] of this.hits) if (t - w.start >= this.windowMs) this.hits.delete(k)
  }
}
