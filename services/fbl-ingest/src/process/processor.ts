import { type Db, inboundMessages, quarantinedReports, type Tx } from '@atmos/db'
import type { SigningKeys } from '@atmos/dkim'
import { type Classification, classifyMessage, type RecipientReport } from '@atmos/mail-feedback'
import type { deliverMessage, TypedQueue } from '@atmos/queues'
import { enforceReputation, recordFeedbackEvent, type StatusQueue, suppress, type Thresholds } from '@atmos/reputation'
import type { Logger } from '@atmos/runtime'
import { withTimeout } from '@atmos/runtime'
import { eq, sql } from 'drizzle-orm'
import type { FblMetrics } from '../metrics.ts'
import type { PoolIdentity } from '../pool.ts'
import { type Attribution, attribute } from './attribute.ts'
import { forwardBudgetSpent, keepInsteadOfForward, prepareForward, spoolForward } from './forward.ts'

type InboundKind = (typeof inboundMessages.$inferSelect)['kind']

export type ProcessorDeps = {
  db: Db
  pool: PoolIdentity
  statusQueue: StatusQueue
  deliveries: TypedQueue<typeof deliverMessage>
  metrics: FblMetrics
  logger: Logger
  operatorMailboxes: readonly string[]
  operatorInbox: string
  /** Forwards an hour, all processes together; past it operator mail is kept (quarantined). */
  forwardsPerHour: number
  /** The pool's DKIM key for signing forwards; present whenever operatorInbox is set. */
  keys?: SigningKeys | undefined
  bounceSuppressionMs: number
  thresholds: Thresholds
}

export type Outcome =
  | { outcome: 'skipped'; reason: string }
  | { outcome: 'processed'; kind: InboundKind; events: number; suppressed: number; memberId?: number }
  | { outcome: 'forwarded'; kind: InboundKind; messageId: string | null }
  | { outcome: 'quarantined'; kind: InboundKind; reason: string }

/** ARF Feedback-Types that are not complaints about our mail. */
const NOT_COMPLAINTS = new Set(['not-spam'])
/** RFC 6591 authentication failure reports: for the operator, not a member's complaint. */
const FOR_OPERATOR = new Set(['auth-failure'])

const KIND: Record<Classification['kind'], InboundKind> = {
  arf: 'arf',
  dsn: 'dsn',
  plain_bounce: 'plain_bounce',
  auto_reply: 'auto_reply',
  other: 'operator',
  unparseable: 'unclassified',
}

/**
 * One stored inbound message → classified and acted on. Idempotent: the message's state
 * is checked and set in the same transaction as the events, suppressions, forward or
 * quarantine it causes, so a retried or duplicated job does nothing twice. Whatever the
 * bytes, it ends in processed, forwarded or quarantined; only a database failure throws
 * (and the job is retried).
 */
export class InboundProcessor {
  private readonly deps: ProcessorDeps

  constructor(deps: ProcessorDeps) {
    // Forwarding unsigned would fail the pool's DMARC at the inbox: never silently.
    if (deps.operatorInbox && !deps.keys) throw new Error('operatorInbox is set but no DKIM keys to sign forwards with')
    this.deps = deps
  }

  async process(inboundId: number): Promise<Outcome> {
    const { db, pool } = this.deps
    const [row] = await db.select().from(inboundMessages).where(eq(inboundMessages.id, inboundId))
    if (!row) return { outcome: 'skipped', reason: 'no such inbound message' }
    if (row.state !== 'received') return { outcome: 'skipped', reason: `already ${row.state}` }
    const classification = await classifyMessage(row.raw, {
      verp: pool.verp,
      feedbackSenderId: pool.feedbackSenderId,
      poolDomain: pool.domain,
      envelope: { mailFrom: row.mailFrom, rcptTo: row.rcptTo },
    })
    const kind = KIND[classification.kind] ?? 'unclassified'
    const toOperator = row.rcptTo.some((r) => this.deps.operatorMailboxes.includes(r.slice(0, r.lastIndexOf('@'))))
    const summary = `${classification.kind}${classification.notes.length ? ` (${classification.notes.join('; ')})` : ''}`

    const forward = () => this.forward(row, kind, summary)
    const quarantine = (reason: string) => this.quarantine(row.id, kind, reason)

    switch (classification.kind) {
      case 'auto_reply':
        return this.finish(row.id, kind, [], null)
      case 'other':
        return forward()
      case 'unparseable':
        return toOperator ? forward() : quarantine(`unparseable: ${classification.notes.join('; ') || 'unknown'}`)
    }
    const feedbackType = classification.feedback?.feedbackType.toLowerCase() ?? ''
    if (classification.kind === 'arf' && FOR_OPERATOR.has(feedbackType)) return forward()
    const attribution = await attribute(db, classification.attribution)
    if ('reason' in attribution) return toOperator ? forward() : quarantine(attribution.reason)
    return this.finish(row.id, kind, this.eventsFor(classification, attribution, row.id), attribution)
  }

  private eventsFor(c: Classification, a: Attribution, inboundId: number): PlannedEvent[] {
    const base = {
      memberId: a.memberId,
      inboundId,
      details: {
        attributedBy: a.via,
        verified: a.verified,
        ...(a.conflicts.length ? { conflicts: a.conflicts } : {}),
        ...(c.notes.length ? { notes: c.notes } : {}),
      },
    }
    // A signed token names one spooled message and so one recipient: that is the address
    // the member sends to (and the relay checks), whatever alias the report shows.
    const target = (reported: string, single: boolean) => {
      if (a.spoolRecipient && (single || reported === a.spoolRecipient)) {
        return { recipient: a.spoolRecipient, messageId: a.messageId, reported }
      }
      return {
        recipient: reported || null,
        messageId: reported && reported === a.spoolRecipient ? a.messageId : null,
        reported,
      }
    }
    if (c.kind === 'arf') {
      const feedbackType = c.feedback?.feedbackType.toLowerCase() || 'abuse'
      if (NOT_COMPLAINTS.has(feedbackType)) return []
      const reports = dedupe(c.recipients.map((r) => target(r.address, c.recipients.length === 1)))
      return reports.map((t) => ({
        ...base,
        type: 'complaint' as const,
        recipient: t.recipient,
        messageId: t.messageId,
        feedbackType,
        source: 'arf',
        reasonClass: 'feedback',
        details: { ...base.details, ...(t.reported && t.reported !== t.recipient ? { reported: t.reported } : {}) },
        // Only a signed token (ours, unforgeable) may suppress; unsigned claims are recorded only.
        suppress: t.recipient && a.verified ? ('complaint' as const) : null,
      }))
    }
    // Only a failure is a bounce: a delayed DSN says the remote is still trying.
    const failed = c.recipients.filter((r) => r.action === 'failed')
    return failed.map((r: RecipientReport) => {
      const t = target(r.address, failed.length === 1)
      return {
        ...base,
        type: r.hard ? ('hard_bounce' as const) : ('soft_bounce' as const),
        recipient: t.recipient,
        messageId: t.messageId,
        status: r.status,
        replyCode: r.replyCode ? Number(r.replyCode) : null,
        reasonClass: r.reason,
        source: c.kind,
        details: {
          ...base.details,
          action: r.action,
          diagnostic: r.diagnostic,
          ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}),
          ...(t.reported && t.reported !== t.recipient ? { reported: t.reported } : {}),
        },
        // A policy block or spam rejection speaks of the sender, not the address: no suppression;
        // nor does a report attributed only by unsigned headers.
        suppress: r.hard && t.recipient && a.verified ? ('hard_bounce' as const) : null,
      }
    })
  }

  private async finish(
    inboundId: number,
    kind: InboundKind,
    planned: PlannedEvent[],
    attribution: Attribution | null,
  ): Promise<Outcome> {
    const { db, metrics } = this.deps
    const done = await db.transaction(async (tx) => {
      if (!(await claim(tx, inboundId))) return null
      let suppressed = 0
      for (const e of planned) {
        const { suppress: reason, ...event } = e
        const eventId = await recordFeedbackEvent(tx, event)
        if (reason && e.recipient) {
          await suppress(tx, {
            memberId: e.memberId,
            address: e.recipient,
            reason,
            eventId,
            detail: describe(e),
            bounceForMs: this.deps.bounceSuppressionMs,
          })
          suppressed++
        }
      }
      await tx
        .update(inboundMessages)
        .set({ kind, state: 'processed', processedAt: new Date() })
        .where(eq(inboundMessages.id, inboundId))
      return { suppressed }
    })
    if (!done) return { outcome: 'skipped', reason: 'processed concurrently' }
    for (const e of planned) metrics.events.inc({ type: e.type })
    metrics.processed.inc({ kind, outcome: 'processed' })
    if (attribution && planned.length) await this.enforce(attribution)
    this.deps.logger.info(
      { inboundId, kind, events: planned.length, suppressed: done.suppressed, member: attribution?.did },
      'inbound processed',
    )
    return {
      outcome: 'processed',
      kind,
      events: planned.length,
      suppressed: done.suppressed,
      ...(attribution ? { memberId: attribution.memberId } : {}),
    }
  }

  /**
   * Enforcement runs after the events commit, so a crash in between would skip it until the
   * member's next event: the reconciler calls this for every member with events in the
   * last `windowMs` (enforcement is idempotent). Returns how many members it checked.
   */
  async recheckRecent(windowMs: number): Promise<number> {
    // Aggregate figures an operator entered (admin or CLI) are enforced here too.
    const rows = await this.deps.db.execute<{ member_id: string; did: string }>(sql`
      select distinct x.member_id, m.did from (
        select member_id from feedback_events where occurred_at > now() - make_interval(secs => ${windowMs / 1000})
        union
        select member_id from aggregate_feedback where created_at > now() - make_interval(secs => ${windowMs / 1000})
      ) x join members m on m.id = x.member_id
      where m.status = 'active'`)
    for (const r of rows) await this.enforce({ memberId: Number(r.member_id), did: r.did })
    return rows.length
  }

  /** Recomputed after the events are committed; a member past a suspend threshold is suspended with the figures. */
  private async enforce(a: Pick<Attribution, 'memberId' | 'did'>): Promise<void> {
    const { db, statusQueue, thresholds, logger, metrics } = this.deps
    const { reputation, suspension } = await enforceReputation(db, statusQueue, a.memberId, { thresholds })
    if (suspension?.changed) {
      metrics.suspensions.inc()
      logger.warn({ member: a.did, reason: reputation.reasons, enqueued: suspension.enqueued }, 'member suspended')
    } else if (reputation.level === 'warn') {
      logger.warn({ member: a.did, reason: reputation.reasons }, 'member reputation past a warning threshold')
    }
  }

  private async forward(
    row: typeof inboundMessages.$inferSelect,
    kind: InboundKind,
    summary: string,
  ): Promise<Outcome> {
    const { db, pool, operatorInbox, keys, metrics, logger } = this.deps
    const keep = keepInsteadOfForward(row, this.deps.operatorMailboxes)
    if (keep) return this.quarantine(row.id, kind, keep)
    const prepared =
      operatorInbox && keys
        ? await prepareForward(keys, pool, operatorInbox, {
            inboundId: row.id,
            raw: row.raw,
            receivedAt: row.receivedAt,
            remoteAddress: row.remoteAddress,
            heloName: row.heloName,
            mailFrom: row.mailFrom,
            rcptTo: row.rcptTo,
            summary,
          })
        : null
    const messageId = await db.transaction(async (tx) => {
      if (!(await claim(tx, row.id))) return undefined
      if (prepared && (await forwardBudgetSpent(tx, this.deps.forwardsPerHour))) return 'over' as const
      const id = prepared ? await spoolForward(tx, pool, prepared) : null
      await tx
        .update(inboundMessages)
        .set({ kind, state: id ? 'forwarded' : 'processed', forwardedMessageId: id, processedAt: new Date() })
        .where(eq(inboundMessages.id, row.id))
      return id
    })
    if (messageId === undefined) return { outcome: 'skipped', reason: 'processed concurrently' }
    if (messageId === 'over') {
      return this.quarantine(
        row.id,
        kind,
        `forward limit of ${this.deps.forwardsPerHour} an hour reached: kept, not forwarded`,
      )
    }
    if (messageId) {
      // Spooled is durable; if Redis does not take the job, the relay's reconciler will.
      await withTimeout(this.deps.deliveries.enqueue({ messageId }, { jobId: messageId }), 1000, 'redis').catch(
        (err: Error) => logger.warn({ err: err.message, messageId }, 'forward not enqueued; the relay reconciler will'),
      )
    } else {
      logger.warn({ inboundId: row.id }, 'operator mail kept: no fblIngest.operatorInbox configured')
    }
    metrics.processed.inc({ kind, outcome: messageId ? 'forwarded' : 'processed' })
    return { outcome: 'forwarded', kind, messageId }
  }

  private async quarantine(inboundId: number, kind: InboundKind, reason: string): Promise<Outcome> {
    const { db, metrics, logger } = this.deps
    const done = await db.transaction(async (tx) => {
      if (!(await claim(tx, inboundId))) return false
      await tx.insert(quarantinedReports).values({ inboundId, reason: reason.slice(0, 2000) })
      await tx
        .update(inboundMessages)
        .set({ kind, state: 'quarantined', processedAt: new Date() })
        .where(eq(inboundMessages.id, inboundId))
      return true
    })
    if (!done) return { outcome: 'skipped', reason: 'processed concurrently' }
    metrics.processed.inc({ kind, outcome: 'quarantined' })
    logger.info({ inboundId, kind, reason }, 'inbound quarantined')
    return { outcome: 'quarantined', kind, reason }
  }
}

type PlannedEvent = {
  type: 'complaint' | 'hard_bounce' | 'soft_bounce'
  memberId: number
  inboundId: number
  messageId: string | null
  recipient: string | null
  status?: string
  replyCode?: number | null
  reasonClass: string
  feedbackType?: string
  source: string
  details: Record<string, unknown>
  suppress: 'complaint' | 'hard_bounce' | null
}

/** Locks the row and checks nobody finished it meanwhile (two jobs for one message). */
async function claim(tx: Tx, inboundId: number): Promise<boolean> {
  const rows = await tx.execute<{ state: string }>(
    sql`select state from inbound_messages where id = ${inboundId} for update`,
  )
  return rows[0]?.state === 'received'
}

function dedupe<T extends { recipient: string | null }>(items: T[]): T[] {
  const seen = new Set<string | null>()
  return items.filter((i) => {
    if (seen.has(i.recipient)) return false
    seen.add(i.recipient)
    return true
  })
}

function describe(e: PlannedEvent): string {
  const code = [e.replyCode, e.status].filter(Boolean).join(' ')
  return `${e.type === 'complaint' ? `complaint (${e.feedbackType})` : e.reasonClass}${code ? ` ${code}` : ''} via ${e.source}`
}
