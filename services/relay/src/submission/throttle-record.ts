import type { Pool } from '@atmos/db'
import type { ThrottleDecision } from '@atmos/reputation'
import type { Logger } from '@atmos/runtime'

/** Entries kept in memory before those of past intervals are dropped. */
const MAX_REMEMBERED = 10_000

/**
 * Writes throttle_decisions at most once per domain, rule and mode in each interval. A spray
 * fires on every recipient it sees; the first firing of an interval (the transition from
 * quiet to firing, or the first of a later interval while it lasts) is the row, with the
 * figures of that moment. This process remembers what it wrote so that the other firings
 * cost no query; across replicas the unique (domain, rule, mode, bucket) index makes a
 * second insert a no-op, so the table grows by one row per interval per firing rule and
 * domain however much is sent.
 */
export class ThrottleRecorder {
  private readonly sql: Pool
  private readonly interval: number
  private readonly logger: Logger
  private readonly written = new Map<string, number>()

  constructor(sql: Pool, interval: number, logger: Logger) {
    this.sql = sql
    this.interval = Math.max(1000, interval)
    this.logger = logger
  }

  async record(
    c: { memberId: number; domainId: number; domain: string },
    decisions: readonly ThrottleDecision[],
    now: Date,
  ): Promise<void> {
    const bucket = Math.floor(now.getTime() / this.interval)
    const fresh = decisions.filter((d) => {
      const key = `${c.domainId}:${d.rule}:${d.mode}`
      if (this.written.get(key) === bucket) return false
      // Taken before the insert, so that concurrent checks of the domain do not all write.
      this.written.set(key, bucket)
      return true
    })
    if (!fresh.length) return
    this.prune(bucket)
    try {
      // Text parameters cast in SQL: drizzle's pool (ctx.db.$client) serializes no Date or JSON values.
      await this.sql`
        insert into throttle_decisions (at, member_id, domain_id, domain, rule, mode, action, figures, bucket)
        select ${now.toISOString()}::timestamptz, ${c.memberId}, ${c.domainId}, ${c.domain}, d.rule, d.mode, d.action, d.figures, ${bucket}
        from jsonb_to_recordset(${JSON.stringify(fresh.map((d) => ({ rule: d.rule, mode: d.mode, action: d.action, figures: d.figures })))}::jsonb)
          as d(rule text, mode text, action text, figures jsonb)
        on conflict (domain_id, rule, mode, bucket) do nothing`
    } catch (err) {
      // Not recorded: forget it, so that the next firing tries again. The answer to the client stands.
      for (const d of fresh) this.written.delete(`${c.domainId}:${d.rule}:${d.mode}`)
      this.logger.warn({ err: (err as Error).message, domain: c.domain }, 'throttle decision not recorded')
    }
  }

  private prune(bucket: number): void {
    if (this.written.size < MAX_REMEMBERED) return
    for (const [key, b] of this.written) if (b !== bucket) this.written.delete(key)
  }
}
