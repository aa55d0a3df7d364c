import type { Db } from '@atmos/db'
import { computeReputation, WINDOWS, type WindowName } from '@atmos/reputation'
import type { Logger } from '@atmos/runtime'
import { sql } from 'drizzle-orm'
import { Counter, Gauge, type Registry } from 'prom-client'

export type FblMetrics = {
  accepted: Counter<string>
  refused: Counter<'reason'>
  processed: Counter<'kind' | 'outcome'>
  events: Counter<'type'>
  suspensions: Counter<string>
  dmarcReports: Counter<'outcome'>
}

export function createFblMetrics(registry: Registry): FblMetrics {
  return {
    accepted: new Counter({
      name: 'atmos_fbl_smtp_accepted_total',
      help: 'Inbound messages stored (250 to DATA)',
      registers: [registry],
    }),
    refused: new Counter({
      name: 'atmos_fbl_smtp_refused_total',
      help: 'Inbound SMTP commands refused, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    processed: new Counter({
      name: 'atmos_fbl_processed_total',
      help: 'Inbound messages processed, by kind and outcome (processed, forwarded, quarantined)',
      labelNames: ['kind', 'outcome'],
      registers: [registry],
    }),
    events: new Counter({
      name: 'atmos_fbl_events_recorded_total',
      help: 'Feedback events recorded by this process, by type',
      labelNames: ['type'],
      registers: [registry],
    }),
    suspensions: new Counter({
      name: 'atmos_fbl_suspensions_total',
      help: 'Members suspended for their complaint or bounce rate',
      registers: [registry],
    }),
    dmarcReports: new Counter({
      name: 'atmos_fbl_dmarc_reports_total',
      help: 'DMARC aggregate reports, by outcome (stored, unattributed, duplicate, quarantined; pool: about the pool, for operators)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
  }
}

/**
 * The pool's figures, all members together, read from Postgres at scrape time: the pool's
 * shared IP and domain carry them, and every replica reports the same numbers.
 */
export function registerPoolGauges(registry: Registry, db: Db, logger: Logger): void {
  let cached: { at: number; value: Promise<PoolFigures> } | undefined
  // One read serves all gauges of a scrape.
  const figures = () => {
    if (!cached || Date.now() - cached.at > 1000) cached = { at: Date.now(), value: poolFigures(db) }
    return cached.value
  }
  const gauge = (name: string, help: string, labelNames: string[], set: (g: Gauge<string>, f: PoolFigures) => void) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        try {
          this.reset()
          set(this, await figures())
        } catch (err) {
          logger.warn({ err: (err as Error).message }, 'pool figures unavailable')
        }
      },
    })
  gauge('atmos_fbl_pool_complaint_rate', 'Complaints per delivered message, all members', ['window'], (g, f) => {
    for (const w of f.windows) g.set({ window: w.window }, w.complaintRate)
  })
  gauge('atmos_fbl_pool_bounce_rate', 'Hard bounces per final outcome, all members', ['window'], (g, f) => {
    for (const w of f.windows) g.set({ window: w.window }, w.bounceRate)
  })
  gauge('atmos_fbl_pool_delivered', 'Recipients delivered, all members', ['window'], (g, f) => {
    for (const w of f.windows) g.set({ window: w.window }, w.delivered)
  })
  gauge('atmos_fbl_pool_events', 'Feedback events, all members, by type', ['window', 'type'], (g, f) => {
    for (const w of f.windows) {
      g.set({ window: w.window, type: 'complaint' }, w.complaints)
      g.set({ window: w.window, type: 'hard_bounce' }, w.hardBounces)
      g.set({ window: w.window, type: 'soft_bounce' }, w.softBounces)
    }
  })
  gauge('atmos_fbl_quarantined', 'Reports in quarantine not yet released', [], (g, f) => g.set(f.quarantined))
  gauge('atmos_fbl_inbound_backlog', 'Stored inbound messages not yet processed', [], (g, f) => g.set(f.backlog))
}

type PoolFigures = {
  windows: {
    window: WindowName
    complaintRate: number
    bounceRate: number
    delivered: number
    complaints: number
    hardBounces: number
    softBounces: number
  }[]
  quarantined: number
  backlog: number
}

async function poolFigures(db: Db): Promise<PoolFigures> {
  const rep = await computeReputation(db, null)
  const [counts] = await db.execute<{ quarantined: string; backlog: string }>(sql`
    select (select count(*) from quarantined_reports where released_at is null) as quarantined,
           (select count(*) from inbound_messages where state = 'received') as backlog`)
  return {
    windows: (Object.keys(WINDOWS) as WindowName[]).map((w) => rep.windows[w]),
    quarantined: Number(counts?.quarantined ?? 0),
    backlog: Number(counts?.backlog ?? 0),
  }
}
