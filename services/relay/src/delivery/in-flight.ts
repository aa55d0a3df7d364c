/**
 * At most `limit` messages in delivery at once in this process, first come first served.
 * A job may carry many messages (one submission batch), so bullmq's concurrency, which
 * counts jobs, no longer bounds the attempts in flight; this does, as it did when a job
 * was one message. A message takes its place before it is claimed, so a claim's lease
 * never runs while the message waits here.
 */
export class InFlight {
  private readonly limit: number
  private running = 0
  private readonly waiting: Array<() => void> = []

  constructor(limit: number) {
    this.limit = Math.max(1, limit)
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve))
    else this.running++
    try {
      return await work()
    } finally {
      // The place passes straight to the next waiter, so `running` never dips below the demand.
      const next = this.waiting.shift()
      if (next) next()
      else this.running--
    }
  }
}
