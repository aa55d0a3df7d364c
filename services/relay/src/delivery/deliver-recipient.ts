import type { PoolMessage } from '@atmos/db'
import { classifyReply, type SmtpReply } from '@atmos/mail-feedback'
import type { Logger } from '@atmos/runtime'
import type { BounceEvent } from './bounce-events.ts'
import type { BounceNotices } from './bounce-notice.ts'
import type { SiteRule } from './config.ts'
import { type DeliveryQueue, enqueueRecipient } from './jobs.ts'
import type { DeliveryMetrics } from './metrics.ts'
import type { MxRouter } from './mx-routes.ts'
import { retryDelay } from './retry-schedule.ts'
import type { Attempt, SiteConnections } from './site-connections.ts'
import { siteOf } from './sites.ts'
import type { AttemptRecord, ClaimedRecipient, DeliverySpool, Finish, SpooledMessage } from './spool.ts'
import type { TlsPolicies, TlsRecord } from './tls/policy.ts'
import { hasTlsRequiredNo } from './tls/tls-required.ts'

export type DeliverRecipientDeps = {
  spool: DeliverySpool
  router: MxRouter
  connections: SiteConnections
  queue: DeliveryQueue
  metrics: DeliveryMetrics
  logger: Logger
  siteRules: SiteRule[]
  siteDefaults: { maxConnections: number; messagesPerConnection: number }
  retrySchedule: number[]
  claimLeaseMs: number
  tls: TlsPolicies
  /** Off: no bounce notices to senders. */
  notices?: BounceNotices | undefined
}

/** What one attempt came to, before it is recorded. */
type Outcome =
  | { kind: 'reply'; reply: SmtpReply; mxHost?: string | undefined; mxAddress?: string | undefined; tls?: TlsRecord }
  | {
      kind: 'temporary'
      cause: 'dns' | 'unreachable' | 'tls'
      reason: string
      mxHost?: string
      mxAddress?: string
      tls?: TlsRecord
    }
  | { kind: 'no-slot' }

/**
 * One attempt at one claimed recipient: route, send over a shaped session, classify the
 * reply, record it, and schedule the retry. The claim is renewed while the attempt runs.
 */
export class RecipientDelivery {
  private readonly d: DeliverRecipientDeps

  constructor(deps: DeliverRecipientDeps) {
    this.d = deps
  }

  /** `now` is the database's time at the claim, which expiry is measured by. */
  async deliver(message: SpooledMessage, r: ClaimedRecipient, now: Date): Promise<void> {
    const { spool, metrics, logger } = this.d
    if (r.lapsed > 0) {
      metrics.lapsedClaims.inc({}, r.lapsed)
      logger.warn(
        { messageId: r.messageId, recipientId: r.id, attempt: r.attempt, lapsed: r.lapsed },
        'took over a recipient whose worker died mid-attempt: it may be delivered twice',
      )
    }
    if (message.expiresAt <= now) {
      // Expired before this attempt began (a retry due after the deadline): the bounce
      // reports the last reply an earlier attempt got, as a DSN's diagnostic would.
      const last = await spool.lastAttempt(r.id)
      await this.record(
        message,
        r,
        undefined,
        { state: 'expired', bounce: this.expiry(message, r, last) },
        'reply',
        last,
      )
      return
    }

    const keepClaim = setInterval(
      () => {
        spool.renew(r, this.d.claimLeaseMs).catch(() => {})
      },
      Math.max(50, Math.floor(this.d.claimLeaseMs / 3)),
    )
    const startedAt = new Date()
    try {
      const outcome = await this.attempt(message, r)
      const durationMs = Date.now() - startedAt.getTime()
      metrics.attemptSeconds.observe({}, durationMs / 1000)
      if (outcome.kind === 'no-slot') {
        metrics.slotWaits.inc()
        // The site is busy with other mail: try again soon, as if this attempt never began.
        const retryInMs = Math.min(this.d.retrySchedule[0] ?? 1000, 5000)
        if (await spool.putBack(r, retryInMs)) {
          await this.enqueue(r, r.attempt - 1, retryInMs)
        }
        return
      }
      await this.settle(message, r, outcome, startedAt, durationMs, now)
    } finally {
      clearInterval(keepClaim)
    }
  }

  private async attempt(message: SpooledMessage, r: ClaimedRecipient): Promise<Outcome> {
    const route = await this.d.router.route(r.domain)
    if (route.status === 'temporary') return { kind: 'temporary', cause: 'dns', reason: route.reason }
    if (route.status === 'permanent') return { kind: 'reply', reply: route.reply }
    const site = siteOf(route.hosts, this.d.siteRules, this.d.siteDefaults)
    const tls = await this.d.tls.forDomain(r.domain, route.hosts, {
      requireTls: message.requireTls,
      tlsRequiredNo: hasTlsRequiredNo(message.body),
    })
    if (tls.permanent) {
      const failure = tls.permanent.text
      return {
        kind: 'reply',
        reply: tls.permanent,
        tls: { policy: 'opportunistic', requireTls: true, verified: false, failure },
      }
    }
    const sent: Attempt = await this.d.connections.deliver(
      site,
      route.hosts,
      message.returnPath,
      r.address,
      message.body,
      { host: tls.host, requireTls: message.requireTls },
    )
    if (sent.kind === 'no-slot') return sent
    if (sent.kind === 'reply')
      return { kind: 'reply', reply: sent.reply, mxHost: sent.mxHost, mxAddress: sent.mxAddress, tls: sent.tls }
    return {
      kind: 'temporary',
      cause: sent.tls ? 'tls' : 'unreachable',
      reason: sent.reason,
      ...(sent.mxHost ? { mxHost: sent.mxHost } : {}),
      ...(sent.mxAddress ? { mxAddress: sent.mxAddress } : {}),
      ...(sent.tls ? { tls: sent.tls } : {}),
    }
  }

  private async settle(
    message: SpooledMessage,
    r: ClaimedRecipient,
    outcome: Exclude<Outcome, { kind: 'no-slot' }>,
    startedAt: Date,
    durationMs: number,
    dbNow: Date,
  ): Promise<void> {
    const reply = outcome.kind === 'reply' ? outcome.reply : undefined
    const cls = reply ? classifyReply(reply) : { outcome: 'deferred' as const, reason: 'undefined', hard: false }
    const record: AttemptRecord = {
      startedAt,
      durationMs,
      mxHost: outcome.mxHost,
      mxAddress: outcome.mxAddress,
      replyCode: reply?.code,
      enhancedStatus: reply?.enhanced,
      reply: reply ? formatReply(reply) : outcome.kind === 'temporary' ? outcome.reason : '',
      outcome: cls.outcome,
      tls: outcome.tls,
    }
    let finish: Finish
    if (cls.outcome === 'delivered') {
      finish = { state: 'delivered' }
    } else if (cls.outcome === 'failed') {
      finish = {
        state: 'bounced',
        bounce: {
          type: cls.hard ? 'hard_bounce' : 'soft_bounce',
          memberId: message.memberId,
          messageId: message.id,
          recipient: r.address,
          status: reply?.enhanced,
          replyCode: reply?.code,
          reasonClass: cls.reason,
          source: 'delivery',
          details: { reply: record.reply, mxHost: record.mxHost, attempts: r.attempt },
        },
      }
    } else {
      const retryInMs = retryDelay(this.d.retrySchedule, r.attempt)
      const nextAt = dbNow.getTime() + durationMs + retryInMs
      finish =
        nextAt >= message.expiresAt.getTime()
          ? { state: 'expired', bounce: this.expiry(message, r, record) }
          : { state: 'deferred', retryInMs }
    }
    await this.record(message, r, record, finish, outcome.kind === 'temporary' ? outcome.cause : 'reply')
  }

  private async record(
    message: SpooledMessage,
    r: ClaimedRecipient,
    attempt: AttemptRecord | undefined,
    finish: Finish,
    deferCause: string = 'reply',
    /** The attempt a bounce notice reports: this one, or the last one before an expiry. */
    reported: AttemptRecord | undefined = attempt,
  ): Promise<void> {
    const { metrics, logger } = this.d
    if (finish.state === 'bounced' || finish.state === 'expired') {
      finish.notice = await this.notice(message, r, finish.state === 'expired', reported)
    }
    const done = await this.d.spool.finish(r, attempt, finish)
    const log = {
      messageId: r.messageId,
      recipientId: r.id,
      attempt: r.attempt,
      state: finish.state,
      mx: attempt?.mxHost,
      reply: attempt?.reply,
      tls: attempt?.tls,
    }
    if (!done.applied) {
      if (finish.state === 'delivered') metrics.lapsedClaims.inc()
      logger.warn(log, 'claim lapsed during the attempt; another worker owns the recipient now')
      return
    }
    switch (finish.state) {
      case 'delivered':
        metrics.delivered.inc()
        metrics.latency.observe({}, (Date.now() - message.receivedAt.getTime()) / 1000)
        logger.info(log, 'delivered')
        break
      case 'deferred':
        metrics.deferred.inc({ cause: deferCause })
        logger.info({ ...log, retryInMs: finish.retryInMs }, 'deferred')
        await this.enqueue(r, r.attempt, finish.retryInMs)
        break
      default:
        metrics.bounced.inc({ type: finish.state === 'expired' ? 'expired' : finish.bounce.type })
        logger.info({ ...log, suppressed: done.bounce?.suppressed, bounceNotice: done.noticeId }, finish.state)
        if (done.noticeId) {
          metrics.bounceNotices.inc({ result: 'spooled' })
          await this.enqueueNotice(done.noticeId)
        }
    }
  }

  /**
   * The notice to the member that a recipient bounced, built and signed before the
   * transaction that records the bounce. None for the pool's own mail or a null sender; a
   * notice that cannot be signed (no pool key) is logged, and the bounce recorded without it.
   */
  private async notice(
    message: SpooledMessage,
    r: ClaimedRecipient,
    expired: boolean,
    reported: AttemptRecord | undefined,
  ): Promise<PoolMessage | undefined> {
    if (!this.d.notices || message.memberId === null) return undefined
    try {
      return await this.d.notices.prepare({
        message,
        recipient: r.address,
        status: expired ? '5.4.7' : (reported?.enhancedStatus ?? '5.0.0'),
        diagnostic: reported?.reply || (expired ? 'delivery time expired' : 'refused'),
        remoteMta: reported?.mxHost,
        lastAttemptAt: reported?.startedAt ?? new Date(),
        expired,
      })
    } catch (err) {
      this.d.metrics.bounceNotices.inc({ result: 'failed' })
      this.d.logger.error(
        { messageId: r.messageId, recipientId: r.id, err: (err as Error).message },
        'bounce notice not sent: it could not be built or signed',
      )
      return undefined
    }
  }

  /** The notice's delivery job; if Redis cannot take it now, the reconciler will make it. */
  private async enqueueNotice(messageId: string): Promise<void> {
    await this.d.queue
      .enqueue({ messageId }, { jobId: messageId, removeOnComplete: true, removeOnFail: true })
      .catch((err: Error) =>
        this.d.logger.warn({ messageId, err: err.message }, 'could not enqueue the bounce notice; the reconciler will'),
      )
  }

  /** The retry's job; if Redis cannot take it now, the reconciler will make it. */
  private async enqueue(r: ClaimedRecipient, attempts: number, delayMs: number): Promise<void> {
    await enqueueRecipient(this.d.queue, { messageId: r.messageId, recipientId: r.id, attempts }, delayMs).catch(
      (err: Error) =>
        this.d.logger.warn({ recipientId: r.id, err: err.message }, 'could not enqueue the retry; the reconciler will'),
    )
  }

  private expiry(message: SpooledMessage, r: ClaimedRecipient, last: AttemptRecord | undefined): BounceEvent {
    return {
      type: 'soft_bounce',
      memberId: message.memberId,
      messageId: message.id,
      recipient: r.address,
      status: last?.enhancedStatus ?? '4.4.7',
      replyCode: last?.replyCode,
      reasonClass: 'expired',
      source: 'delivery',
      details: { lastReply: last?.reply ?? null, attempts: r.attempt, expiresAt: message.expiresAt.toISOString() },
    }
  }
}

function formatReply(reply: SmtpReply): string {
  return [reply.code, reply.enhanced, reply.text].filter((x) => x !== undefined && x !== '').join(' ')
}
