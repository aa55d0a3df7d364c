/**
 * How many messages each address key (see addressKey) began in the last `windowMs`: a
 * sliding window of start times, at most `max` kept a key. Kept in this process only: a
 * listener must keep answering when Redis does not, and N replicas allowing N times the
 * figure is a known bound, not a hole (the connection limit is per process for the same
 * reason). Keys whose window emptied are swept, so a scan from many addresses costs
 * memory only while it lasts.
 */
export class MessageRate {
  readonly max: number
  readonly windowMs: number
  private readonly starts = new Map<string, number[]>()
  private lastSweep = 0

  constructor(max: number, windowMs: number) {
    this.max = max
    this.windowMs = windowMs
  }

  /** Milliseconds until the key may begin another message; 0 when it may now. */
  waitFor(key: string, now = Date.now()): number {
    const times = this.recent(key, now)
    if (times.length < this.max) return 0
    return Math.max(1, times[0]! + this.windowMs - now)
  }

  /** Counts one message begun by the key. */
  hit(key: string, now = Date.now()): void {
    this.sweep(now)
    const times = this.recent(key, now)
    times.push(now)
    // More than max are never needed to answer waitFor; a flood does not grow the list.
    if (times.length > this.max) times.splice(0, times.length - this.max)
    this.starts.set(key, times)
  }

  /** Keys with a message in the current window (tests and metrics). */
  get size(): number {
    return this.starts.size
  }

  private recent(key: string, now: number): number[] {
    const times = this.starts.get(key)
    if (!times) return []
    const from = now - this.windowMs
    let drop = 0
    while (drop < times.length && times[drop]! <= from) drop++
    if (drop) times.splice(0, drop)
    if (!times.length) this.starts.delete(key)
    return times
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < this.windowMs) return
    this.lastSweep = now
    for (const key of [...this.starts.keys()]) this.recent(key, now)
  }
}
