/**
 * Whether the ingest source is connected and how far behind the network ingest is, as the
 * metrics report them. The lag of the last event applied says nothing once the source is
 * gone (no event comes to update it), so while the source is unreachable the lag grows by
 * the time since it went away: an alert on lag fires during an outage, not only after it.
 */
export class SourceHealth {
  private connected = false
  private downSinceMs: number
  private lagAtLastEventS = 0
  private readonly now: () => number

  constructor(now: () => number = Date.now) {
    this.now = now
    this.downSinceMs = now()
  }

  get isConnected(): boolean {
    return this.connected
  }

  /** The source (re)connected or went away; repeated reports of the same state change nothing. */
  connection(up: boolean): void {
    if (up === this.connected) return
    this.connected = up
    if (!up) this.downSinceMs = this.now()
  }

  /** An event the source dated `eventTimeS` (seconds since the epoch) was applied. */
  event(eventTimeS: number): void {
    if (!Number.isFinite(eventTimeS)) return
    this.lagAtLastEventS = Math.max(0, this.now() / 1000 - eventTimeS)
  }

  /** Seconds behind: the last event's lag, plus the time since the source went away while it is away. */
  lagSeconds(): number {
    if (this.connected) return this.lagAtLastEventS
    return this.lagAtLastEventS + Math.max(0, this.now() - this.downSinceMs) / 1000
  }
}
