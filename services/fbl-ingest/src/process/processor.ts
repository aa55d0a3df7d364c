import { type Db, inboundMessages, quarantinedReports, type Tx } from '@atmos/db'
import type { SigningKeys } from '@atmos/dkim'
import { type Classification, classifyMessage, type RecipientReport } from '@atmos/mail-feedback'
import type { deliverMessage, TypedQueue } from '@atmos/queues'
import {
  enforceReputation,
  recordFeedbackEventOnce,
  type StatusQueue,
  suppress,
  type Thresholds,
} from '@atmos/reputation'
import type { Logger } from '@atmos/runtime'
import { withTimeout } from '@atmos/runtime'
import { eq, sql } from 'drizzle-orm'
import type { FeedbackProvider } from '../config.ts'
import { attributeReport } from '../dmarc/attribute.ts'
import type { PoolIpMatcher } from '../dmarc/pool-ips.ts'
import { type ReportLimits, ReportRefused, readReport } from '../dmarc/read.ts'
import type { ReverseNames } from '../dmarc/reverse.ts'
import { insertReport } from '../dmarc/store.ts'
import { recordForwardBounce } from '../forwarding/forward-bounce.ts'
import type { ReplyForwarder } from '../forwarding/forward-reply.ts'
import { isSrsAddress } from '../forwarding/srs.ts'
import type { FblMetrics } from '../metrics.ts'
import type { PoolIdentity } from '../pool.ts'
import { type Attribution, attribute } from './attribute.ts'
import { forwardBudgetSpent, keepInsteadOfForward, prepareForward, spoolForward } from './forward.ts'
import { authenticateReporter, type Reporter, type ReportResolver } from './reporter.ts'

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
  /** Feedback-loop providers whose complaints count, and the DNS their reports are checked over. */
  providers: readonly FeedbackProvider[]
  reportResolver: ReportResolver
  dnsTimeoutMs: number
  /** Forwards replies to members' domains; without it such mail waits (a worker of an older build). */
  replies?: ReplyForwarder | undefined
  /** DMARC aggregate reports: their mailbox's local part, bounds, pool addresses, reverse names; absent: none. */
  dmarc?: DmarcDeps | undefined
}

export type DmarcDeps = {
  mailbox: string
  limits: ReportLimits
  isPool: PoolIpMatcher
  reverse: ReverseNames
}

export type Outcome =
  | { outcome: 'skipped'; reason: string }
  | { outcome: 'processed'; kind: InboundKind; events: number; suppressed: number; memberId?: number }
  | { outcome: 'forwarded'; kind: InboundKind; messageId: string | null }
  | { outcome: 'quarantined'; kind: InboundKind; reason: string }
  | { outcome: 'dmarc'; reportId: number | null; rows: number; memberId: number | null; duplicate: boolean }

/** ARF Feedback-Types that are not complaints about our mail. */
const NOT_COMPLAINTS = new Set(['not-spam'])
/** The recipient's wish to hear no more from the member (RFC 5965 opt-out; Apple Mail's unsubscribe reads as one). */
const UNSUBSCRIBES = new Set(['opt-out', 'unsubscribe'])
/** Other addresses a report lists are kept as evidence, this many at most. */
const MAX_REPORTED = 20
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
 * bytes, it ends in processed, forwarded or quarantined; only a database failure, or a
 * feedback-loop provider's DNS failing while its report is checked, throws (and the job is retried).
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
    if (row.kind === 'reply') return this.forwardReply(row)
    const dmarc = this.deps.dmarc
    if (dmarc && row.rcptTo.some((r) => r.slice(0, r.lastIndexOf('@')) === dmarc.mailbox)) {
      return this.dmarcReport(row, dmarc)
    }
    const classification = await classifyMessage(row.raw, {
      verp: pool.verp,
      feedbackSenderId: pool.feedbackSenderId,
      poolDomain: pool.domain,
      envelope: { mailFrom: row.mailFrom, rcptTo: row.rcptTo },
    })
    const kind = KIND[classification.kind] ?? 'unclassified'
    const toOperator = row.rcptTo.some((r) => this.deps.operatorMailboxes.includes(r.slice(0, r.lastIndexOf('@'))))
    const summary = `${classification.kind}${classification.notes.length ? ` (${classification.notes.join('; ')})` : ''}`

    // A forward's bounce, at the SRS address it was sent from: recorded, never sent on.
    const srs = row.rcptTo.find((r) => isSrsAddress(pool.verp, r))
    if (srs) return this.forwardBounce(row, srs, classification, kind)

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
    // Only a complaint our token attributes could count: only then is it worth asking who sent it.
    const reporter =
      classification.kind === 'arf' && isComplaint(feedbackType || 'abuse') && attribution.verified
        ? await authenticateReporter(row, this.deps.providers, {
            resolver: this.deps.reportResolver,
            mta: pool.domain,
            timeoutMs: this.deps.dnsTimeoutMs,
          })
        : null
    return this.finish(row.id, kind, this.eventsFor(classification, attribution, row.id, reporter), attribution)
  }

  /**
   * One event at most a report and type, about the one recipient a signed token names: a
   * token holder (any recipient of the member's mail) may report that message once, but the
   * addresses a report lists are its sender's words, kept in the details, never acted on.
   */
  private eventsFor(c: Classification, a: Attribution, inboundId: number, reporter: Reporter | null): PlannedEvent[] {
    const base = {
      memberId: a.memberId,
      domainId: a.domainId,
      inboundId,
      details: {
        attributedBy: a.via,
        verified: a.verified,
        ...(a.conflicts.length ? { conflicts: a.conflicts } : {}),
        ...(c.notes.length ? { notes: c.notes } : {}),
      },
    }
    // A signed token names one spooled message and so one recipient: that is the address
    // the member sends to (and the relay checks), whatever alias the report shows. Without
    // one, the first address the report lists is kept (such events never count nor suppress).
    const listed = [...new Set(c.recipients.map((r) => r.address).filter(Boolean))]
    const recipient = a.verified ? a.spoolRecipient : (listed[0] ?? null)
    const messageId = a.verified ? a.messageId : null
    const others = listed.filter((x) => x !== recipient)
    const reported = others.length
      ? {
          reported: others.slice(0, MAX_REPORTED),
          ...(others.length > MAX_REPORTED ? { reportedCount: others.length } : {}),
        }
      : {}
    if (c.kind === 'arf') {
      const feedbackType = c.feedback?.feedbackType.toLowerCase() || 'abuse'
      if (NOT_COMPLAINTS.has(feedbackType)) return []
      const common = { ...base, recipient, messageId, feedbackType, source: 'arf', reasonClass: 'feedback' }
      if (UNSUBSCRIBES.has(feedbackType)) {
        // Not a complaint: it never counts, and the entry it makes is one the member may lift.
        return [
          {
            ...common,
            type: 'unsubscribe' as const,
            details: { ...base.details, ...reported },
            suppress: recipient && a.verified ? ('unsubscribe' as const) : null,
          },
        ]
      }
      // A complaint counts (and suppresses for good) only from a configured feedback-loop
      // provider that proved it sent the report; anyone else's is kept for the operator.
      const counted = reporter !== null && reporter.provider !== null
      const who = reporter
        ? reporter.provider !== null
          ? { reporter: reporter.provider, reporterAuth: `${reporter.via} ${reporter.domain}` }
          : {
              counted: false,
              reporter: null,
              notCounted: `the report is from no configured feedback-loop provider: ${reporter.why}`,
            }
        : {}
      return [
        {
          ...common,
          type: 'complaint' as const,
          details: { ...base.details, ...who, ...reported },
          // Only a signed token (ours, unforgeable) may suppress; unsigned claims are recorded only.
          suppress: recipient && a.verified && counted ? ('complaint' as const) : null,
        },
      ]
    }
    // Only a failure is a bounce: a delayed DSN says the remote is still trying.
    const failed = c.recipients.filter((r) => r.action === 'failed')
    if (!failed.length) return []
    // The entry about the token's recipient; a lone address is an alias of it. A report that
    // lists several others says nothing sure about ours: recorded, as no hard bounce.
    const distinct = new Set(failed.map((r) => r.address))
    const own = a.verified ? failed.find((r) => r.address === recipient) : undefined
    const r: RecipientReport = own ?? failed[0]!
    const sure = !a.verified || own !== undefined || distinct.size === 1
    const hard = r.hard && sure
    return [
      {
        ...base,
        type: hard ? ('hard_bounce' as const) : ('soft_bounce' as const),
        recipient,
        messageId,
        status: r.status,
        replyCode: r.replyCode ? Number(r.replyCode) : null,
        reasonClass: r.reason,
        source: c.kind,
        details: {
          ...base.details,
          action: r.action,
          diagnostic: r.diagnostic,
          ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}),
          ...(sure ? {} : { ambiguous: 'the report names other addresses than the spooled recipient' }),
          ...reported,
        },
        // A policy block or spam rejection speaks of the sender, not the address: no suppression;
        // nor does a report attributed only by unsigned headers.
        suppress: hard && recipient && a.verified ? ('hard_bounce' as const) : null,
      },
    ]
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
      const recorded: PlannedEvent[] = []
      for (const e of planned) {
        const { suppress: reason, domainId, ...event } = e
        // A replayed report, or a second DSN about the same message, finds its event standing: nothing more happens.
        const { id: eventId, recorded: isNew } = await recordFeedbackEventOnce(tx, event)
        if (!isNew) continue
        recorded.push(e)
        if (reason && e.recipient) {
          await suppress(tx, {
            memberId: e.memberId,
            domainId,
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
      return { suppressed, recorded }
    })
    if (!done) return { outcome: 'skipped', reason: 'processed concurrently' }
    const { recorded } = done
    for (const e of recorded) metrics.events.inc({ type: e.type })
    metrics.processed.inc({ kind, outcome: 'processed' })
    if (attribution && recorded.length) await this.enforce(attribution)
    this.deps.logger.info(
      {
        inboundId,
        kind,
        events: recorded.length,
        ...(recorded.length < planned.length ? { duplicates: planned.length - recorded.length } : {}),
        suppressed: done.suppressed,
        member: attribution?.did,
        ...(attribution?.domain ? { domain: attribution.domain } : {}),
        ...notCounted(recorded),
      },
      'inbound processed',
    )
    return {
      outcome: 'processed',
      kind,
      events: recorded.length,
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
    /** Mailboxes read by people for this message: the operator ones, and the report mailbox for the pool's own reports. */
    readBy: readonly string[] = this.deps.operatorMailboxes,
  ): Promise<Outcome> {
    const { db, pool, operatorInbox, keys, metrics, logger } = this.deps
    const keep = keepInsteadOfForward(row, readBy)
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

  private async forwardReply(row: typeof inboundMessages.$inferSelect): Promise<Outcome> {
    const { replies, metrics } = this.deps
    if (!replies) throw new Error('reply to a member domain, but no forwarder configured')
    const outcomes = await replies.forward(row)
    if (!outcomes) return { outcome: 'skipped', reason: 'processed concurrently' }
    const first = outcomes.find((o) => o.messageId)?.messageId ?? null
    metrics.processed.inc({ kind: 'reply', outcome: first ? 'forwarded' : 'processed' })
    return { outcome: 'forwarded', kind: 'reply', messageId: first }
  }

  private async forwardBounce(
    row: typeof inboundMessages.$inferSelect,
    srs: string,
    c: Classification,
    kind: InboundKind,
  ): Promise<Outcome> {
    const { db, metrics, logger } = this.deps
    const done = await recordForwardBounce(db, row, srs, c, kind, this.deps.bounceSuppressionMs)
    if (!done) return { outcome: 'skipped', reason: 'processed concurrently' }
    metrics.processed.inc({ kind, outcome: 'processed' })
    logger.info(
      { inboundId: row.id, kind, forward: done.forwardId, note: done.note, suppressed: done.suppressed },
      'forward bounce recorded',
    )
    return { outcome: 'processed', kind, events: done.bounced ? 1 : 0, suppressed: done.suppressed ? 1 : 0 }
  }

  /**
   * A DMARC aggregate report: read within its limits, attributed to a member's domain, its
   * sources' reverse names looked up (outside the transaction: DNS may be slow), then the
   * report, its rows and the message's state in one transaction. Whatever the bytes, it ends
   * processed or quarantined with the reason; only the database failing throws.
   */
  private async dmarcReport(row: typeof inboundMessages.$inferSelect, dmarc: DmarcDeps): Promise<Outcome> {
    const { db, metrics, logger } = this.deps
    let report: Awaited<ReturnType<typeof readReport>>
    try {
      report = await readReport(row.raw, dmarc.limits)
    } catch (err) {
      // A parser's own failure on hostile bytes (a stack overflow, say) is the report's fault too.
      const reason = err instanceof ReportRefused ? err.reason : `unreadable: ${(err as Error).message}`
      metrics.dmarcReports.inc({ outcome: 'quarantined' })
      return this.quarantine(row.id, 'dmarc', `DMARC report: ${reason}`)
    }
    const attribution = await attributeReport(db, report)
    const policy = report.policy_published.domain
    if (!attribution.attributed && this.isPoolDomain(policy)) {
      // The pool's own DMARC record names this mailbox too: its reports are the operators'
      // to read, forwarded as operator mail (only when authenticated at receipt).
      metrics.dmarcReports.inc({ outcome: 'pool' })
      const summary = `DMARC aggregate report about ${policy} from ${report.report_metadata.org_name}`
      return this.forward(row, 'dmarc', summary.slice(0, 300), [...this.deps.operatorMailboxes, dmarc.mailbox])
    }
    const reverse = attribution.attributed
      ? await dmarc.reverse.namesFor(attribution.rows.map((r) => r.row.source_ip))
      : new Map<string, string>()
    // Only a report whose From domain passed DMARC at receipt says who really sent it.
    const verifiedSender = row.auth?.dmarc === 'pass' ? row.auth.fromDomain : null
    const stored = await db.transaction(async (tx) => {
      if (!(await claim(tx, row.id))) return null
      const result = await insertReport(tx, {
        inboundId: row.id,
        report,
        attribution,
        verifiedSender,
        reverse,
        isPool: dmarc.isPool,
      })
      await tx
        .update(inboundMessages)
        .set({ kind: 'dmarc', state: 'processed', processedAt: new Date() })
        .where(eq(inboundMessages.id, row.id))
      return result
    })
    if (!stored) return { outcome: 'skipped', reason: 'processed concurrently' }
    const outcome = !stored.stored ? 'duplicate' : attribution.attributed ? 'stored' : 'unattributed'
    metrics.dmarcReports.inc({ outcome })
    metrics.processed.inc({ kind: 'dmarc', outcome: 'processed' })
    const meta = report.report_metadata
    logger.info(
      {
        inboundId: row.id,
        org: meta.org_name,
        reportId: meta.report_id,
        policyDomain: report.policy_published.domain,
        outcome,
        ...(attribution.attributed
          ? { domain: attribution.domain, rows: attribution.rows.length, rowsElsewhere: attribution.elsewhere }
          : { why: attribution.reason }),
      },
      'dmarc report processed',
    )
    return {
      outcome: 'dmarc',
      reportId: stored.stored ? stored.id : null,
      rows: stored.stored ? stored.rows : 0,
      memberId: attribution.attributed ? attribution.memberId : null,
      duplicate: !stored.stored,
    }
  }

  private isPoolDomain(domain: string): boolean {
    const { pool } = this.deps
    return [pool.domain, pool.verp.bounceDomain].some((d) => domain === d || domain.endsWith(`.${d}`))
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
  type: 'complaint' | 'hard_bounce' | 'soft_bounce' | 'unsubscribe'
  memberId: number
  /** The member's domain the reported mail was sent as, when known: the suppression records it. */
  domainId: number | null
  inboundId: number
  messageId: string | null
  recipient: string | null
  status?: string
  replyCode?: number | null
  reasonClass: string
  feedbackType?: string
  source: string
  details: Record<string, unknown>
  suppress: 'complaint' | 'hard_bounce' | 'unsubscribe' | null
}

function isComplaint(feedbackType: string): boolean {
  return !NOT_COMPLAINTS.has(feedbackType) && !UNSUBSCRIBES.has(feedbackType) && !FOR_OPERATOR.has(feedbackType)
}

/** A complaint recorded but not counted is for the operator to see: the log line says why. */
function notCounted(recorded: PlannedEvent[]): Record<string, unknown> {
  const e = recorded.find((x) => x.type === 'complaint' && x.details.counted === false)
  return e ? { complaintNotCounted: e.details.notCounted } : {}
}

/** Locks the row and checks nobody finished it meanwhile (two jobs for one message). */
async function claim(tx: Tx, inboundId: number): Promise<boolean> {
  const rows = await tx.execute<{ state: string }>(
    sql`select state from inbound_messages where id = ${inboundId} for update`,
  )
  return rows[0]?.state === 'received'
}

function describe(e: PlannedEvent): string {
  const code = [e.replyCode, e.status].filter(Boolean).join(' ')
  return `${e.type === 'complaint' || e.type === 'unsubscribe' ? `${e.type} (${e.feedbackType})` : e.reasonClass}${code ? ` ${code}` : ''} via ${e.source}`
}
