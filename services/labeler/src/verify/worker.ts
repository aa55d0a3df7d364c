import { attestations, type Db, type Tx, verificationChecks, verificationRuns, verificationStatus } from '@atmos/db'
import type { Job, Worker } from '@atmos/queues'
import {
  createRedis,
  createWorker,
  DelayedError,
  type PayloadOf,
  verifyAttestation as queueDef,
  TypedQueue,
  type verifyAttestation as verifyQueue,
} from '@atmos/queues'
import { type Clock, type Logger, systemClock } from '@atmos/runtime'
import { type AttestationVerification, type VerifyDeps, verifyAttestation } from '@atmos/verify'
import { and, eq, gt, lte } from 'drizzle-orm'
import type { Redis } from 'ioredis'
import { Counter, type Registry } from 'prom-client'
import { holderOf, lockDomains, moveRelayDomain, refusedClaim, requestRelease } from '../domains/holds.ts'
import type { LabelManager } from '../labels/manager.ts'
import type { StoredLabel } from '../labels/writer.ts'
import { budgetKind, type DidBudget } from './did-budget.ts'
import { attestationJobKey, enqueueRequests, type VerifyRequest } from './requests.ts'

type Payload = PayloadOf<typeof verifyQueue>

/** The job id prefix of the worker's own follow-ups of a temporary error. */
const RETRY_JOB_PREFIX = 'retry_'

/**
 * Consumes verify-attestation jobs: runs every check for the attestation, then records
 * the run, its checks, the standing status of (DID, domain), the answered request and any
 * label change in one transaction; if the attestation changed while the checks ran, only
 * the run. A domain another DID holds is refused without asking DNS; a DID that stops
 * holding a domain hands it on (the other claimants are asked to verify), and one that
 * gains it takes it from another member's relay domains row.
 */
export class VerifyWorker {
  private readonly db: Db
  private readonly deps: VerifyDeps
  private readonly manager: LabelManager
  private readonly logger: Logger
  private readonly redisUrl: string
  private readonly prefix: string
  private readonly concurrency: number
  private worker: Worker | undefined
  private connection: Redis | undefined
  private readonly verifications: Counter
  private readonly onLabels: (labels: StoredLabel[]) => void
  private readonly gracePeriodMs: number
  private readonly clock: Clock
  private readonly retry: { minMs: number; maxMs: number }
  private retryQueue: TypedQueue<typeof verifyQueue> | undefined
  private retryConnection: Redis | undefined
  private readonly budget: DidBudget | undefined
  private readonly deferred: Counter

  constructor(opts: {
    db: Db
    deps: VerifyDeps
    manager: LabelManager
    logger: Logger
    registry: Registry
    redisUrl: string
    prefix: string
    concurrency: number
    /** How long temporary errors may last before the domain counts as lost. */
    gracePeriodMs: number
    clock?: Clock
    /** Backoff bounds for re-checking a domain whose checks could not complete. */
    retry: { minMs: number; maxMs: number }
    onLabels?: (labels: StoredLabel[]) => void
    /** Runs per DID and window; absent: unbounded. */
    budget?: DidBudget
  }) {
    this.budget = opts.budget
    this.gracePeriodMs = opts.gracePeriodMs
    this.clock = opts.clock ?? systemClock
    this.retry = opts.retry
    this.onLabels = opts.onLabels ?? (() => {})
    this.db = opts.db
    this.deps = opts.deps
    this.manager = opts.manager
    this.logger = opts.logger.child({ concern: 'verify' })
    this.redisUrl = opts.redisUrl
    this.prefix = opts.prefix
    this.concurrency = opts.concurrency
    this.verifications = new Counter({
      name: 'atmos_labeler_verifications_total',
      help: 'Checks run, by check and outcome (and check="all" for the attestation as a whole)',
      labelNames: ['check', 'outcome'],
      registers: [opts.registry],
    })
    this.deferred = new Counter({
      name: 'atmos_labeler_verifications_deferred_total',
      help: 'Verification jobs put off to the next window: the DID had used its budget (by kind of trigger)',
      labelNames: ['kind'],
      registers: [opts.registry],
    })
  }

  start(): void {
    // A worker blocks on its connection: it gets one of its own.
    this.connection = createRedis(this.redisUrl)
    this.connection.on('error', () => {})
    this.worker = createWorker(queueDef, this.connection, this.prefix, (payload, job) => this.process(payload, job), {
      concurrency: this.concurrency,
      // A job whose worker died (kill -9, lost node) is taken up again within ~15 s rather
      // than bullmq's default minute; the lock is renewed while a slow verification runs.
      lockDuration: 10_000,
      stalledInterval: 5_000,
    })
    this.worker.on('failed', (job, err) => this.logger.warn({ jobId: job?.id, err: err.message }, 'verify job failed'))
  }

  /** Waits for the jobs in progress to finish, then closes. */
  async stop(): Promise<void> {
    await this.worker?.close()
    await this.retryQueue?.close()
    await this.retryConnection?.quit().catch(() => this.retryConnection?.disconnect())
    this.retryQueue = undefined
    this.retryConnection = undefined
    await this.connection?.quit().catch(() => this.connection?.disconnect())
    this.worker = undefined
  }

  /** `job` absent (a direct call): a run past the budget is not made and reported as deferred. */
  async process(payload: Payload, job?: Job): Promise<{ outcome: string }> {
    if (payload.rkey === undefined) return this.fanOut(payload)
    const rkey = payload.rkey
    const [att] = await this.db
      .select()
      .from(attestations)
      .where(and(eq(attestations.did, payload.did), eq(attestations.rkey, rkey)))
    const requestedAt = new Date(payload.requestedAt)
    if (!att || att.deleted || att.state !== 'valid' || !att.domain) {
      await this.clearRequest(this.db, payload.did, rkey, requestedAt)
      return { outcome: 'skipped' }
    }
    const isRetry = job?.id?.startsWith(RETRY_JOB_PREFIX) ?? false
    const answered = await this.answeredAlready(att, payload, requestedAt, isRetry)
    if (answered) {
      this.logger.debug({ did: att.did, trigger: payload.trigger, answered }, 'verify job needs no run')
      return { outcome: 'superseded' }
    }
    const kind = this.budget ? budgetKind(payload.trigger, isRetry) : undefined
    if (kind && this.budget) {
      const decision = await this.budget.take(att.did, kind)
      if (!decision.ok) {
        this.deferred.inc({ kind })
        this.logger.info(
          { did: att.did, trigger: payload.trigger, until: decision.windowEndsAt.toISOString() },
          'verification budget used up: deferred to the next window',
        )
        if (!job?.token) return { outcome: 'deferred' }
        // Spread over the window's first minute, so a DID's deferred jobs do not wake as one.
        const wait = decision.windowEndsAt.getTime() - this.clock.now().getTime() + Math.floor(Math.random() * 60_000)
        await job.moveToDelayed(Date.now() + Math.max(1000, wait), job.token)
        throw new DelayedError()
      }
    }
    const domain = att.domain
    const started = this.clock.now()
    // A domain another DID holds is refused as it stands, without a DNS query.
    const holder = await holderOf(this.db, domain, att.did)
    const checked = holder
      ? refusedClaim(domain, holder, started)
      : await verifyAttestation({ did: att.did, domain, dkimSelectors: att.dkimSelectors }, this.deps)
    const outage: { since: Date | null } = { since: null }
    const released: VerifyRequest[] = []
    const applied = await this.db.transaction(async (tx) => {
      // Who holds the domain is decided under its lock, taken before the attestation row
      // (ingest takes them in the same order).
      await lockDomains(tx, [domain])
      // The checks take seconds, and meanwhile the record may have been deleted or replaced,
      // or its account gone inactive, withdrawing the labels. The row is read again, locked:
      // such a change either committed before (and is seen here) or waits for this commit
      // (and withdraws after it), so a result about what no longer stands issues nothing.
      const [current] = await tx.select().from(attestations).where(eq(attestations.id, att.id)).for('update')
      // Another DID may have gained the domain while the checks ran.
      const holderNow = holder ?? (await holderOf(tx, domain, att.did))
      const result = holderNow && !holder ? refusedClaim(domain, holderNow, started) : checked
      const runId = await this.recordRun(tx, att.id, payload, domain, result, started)
      await this.clearRequest(tx, payload.did, rkey, requestedAt)
      const outdated = outdatedBy(att, current)
      if (outdated) return { outdated, result, emitted: [] as StoredLabel[] }
      const status = await this.recordStatus(tx, runId, payload.did, domain, result)
      outage.since = status.temperrorSince
      const reason = status.lost
        ? `No check could be completed since ${status.temperrorSince!.toISOString()} (grace period ${Math.round(this.gracePeriodMs / 3_600_000)} h): ${result.reason}`
        : result.reason
      const now = this.clock.now()
      const emitted: StoredLabel[] = []
      // Requests carry wall-clock time, as ingest's do (the reconciler compares them with now()).
      if (status.heldBefore && !status.holds) {
        released.push(...(await requestRelease(tx, att.did, [domain], new Date())))
      }
      if (status.holds && !status.heldBefore) {
        for (const from of await moveRelayDomain(tx, att.did, domain, now)) {
          emitted.push(...(await this.manager.recompute(tx, from, `${domain} moved to ${att.did}`)))
        }
      }
      emitted.push(...(await this.manager.recompute(tx, att.did, reason, { renew: result.outcome === 'pass' })))
      return { outdated: null, result, emitted }
    })
    const { emitted, outdated, result } = applied
    if (emitted.length) this.onLabels(emitted)
    if (released.length) await enqueueRequests(this.followUps(), released, this.logger)
    for (const c of result.checks) this.verifications.inc({ check: c.check, outcome: c.outcome })
    this.verifications.inc({ check: 'all', outcome: result.outcome })
    if (outdated) {
      this.logger.info(
        { did: att.did, domain, outcome: result.outcome, outdated },
        'verification outdated while it ran: run recorded, labels left alone',
      )
      return { outcome: 'skipped' }
    }
    if (result.outcome === 'temperror' && outage.since) await this.retryLater(att.did, att.rkey, outage.since)
    this.logger.info(
      { did: att.did, domain, outcome: result.outcome, reason: result.reason, labels: emitted.length },
      'attestation verified',
    )
    return { outcome: result.outcome }
  }

  /**
   * A job that names no record key asks for every live attestation of the DID: one job
   * each, with the same trigger and time, so each has its own budget and request.
   */
  private async fanOut(payload: Payload): Promise<{ outcome: string }> {
    const rows = await this.db
      .select({ rkey: attestations.rkey })
      .from(attestations)
      .where(and(eq(attestations.did, payload.did), eq(attestations.deleted, false), eq(attestations.state, 'valid')))
    const at = new Date(payload.requestedAt).getTime()
    for (const { rkey } of rows) {
      await this.followUps().enqueue(
        { ...payload, rkey },
        { jobId: `each_${payload.trigger}_${attestationJobKey(payload.did, rkey)}_${at}` },
      )
    }
    return { outcome: rows.length ? 'fanned-out' : 'skipped' }
  }

  private async recordRun(
    tx: Tx,
    attestationId: number,
    payload: Payload,
    domain: string,
    result: AttestationVerification,
    started: Date,
  ): Promise<number> {
    const [run] = await tx
      .insert(verificationRuns)
      .values({
        attestationId,
        did: payload.did,
        domain,
        trigger: payload.trigger,
        outcome: result.outcome,
        startedAt: started,
        finishedAt: this.clock.now(),
      })
      .returning({ id: verificationRuns.id })
    if (result.checks.length) {
      await tx.insert(verificationChecks).values(
        result.checks.map((c) => ({
          runId: run!.id,
          check: c.check,
          outcome: c.outcome,
          reason: c.reason,
          warnings: c.warnings,
          details: c.details,
        })),
      )
    }
    return run!.id
  }

  /**
   * The standing state of (DID, domain) after this run. The DID holds the domain while it
   * verifies; a temporary error keeps a hold it had, until temporary errors have lasted the
   * whole grace period (since `temperrorSince`): then the domain counts as lost.
   */
  private async recordStatus(
    tx: Tx,
    runId: number,
    did: string,
    domain: string,
    result: AttestationVerification,
  ): Promise<{ temperrorSince: Date | null; lost: boolean; heldBefore: boolean; holds: boolean }> {
    const finished = this.clock.now()
    const [prev] = await tx
      .select()
      .from(verificationStatus)
      .where(and(eq(verificationStatus.did, did), eq(verificationStatus.domain, domain)))
      .for('update')
    const pass = result.outcome === 'pass'
    // The start of an unbroken run of temporary errors: the grace period counts from it.
    const temperrorSince = result.outcome === 'temperror' ? (prev?.temperrorSince ?? finished) : null
    const lost = temperrorSince !== null && finished.getTime() - temperrorSince.getTime() >= this.gracePeriodMs
    const heldBefore = prev?.holds === true
    const holds = pass || (result.outcome === 'temperror' && heldBefore && !lost)
    const values = {
      holds,
      lastRunId: runId,
      lastOutcome: result.outcome,
      lastRunAt: finished,
      lastPassAt: pass ? finished : (prev?.lastPassAt ?? null),
      temperrorSince,
    }
    await tx
      .insert(verificationStatus)
      .values({ did, domain, ...values })
      .onConflictDoUpdate({ target: [verificationStatus.did, verificationStatus.domain], set: values })
    return { temperrorSince, lost, heldBefore, holds }
  }

  /** The queue for the worker's own follow-ups (retries, release requests), opened on first use. */
  private followUps(): TypedQueue<typeof verifyQueue> {
    if (!this.retryQueue) {
      this.retryConnection = createRedis(this.redisUrl)
      this.retryConnection.on('error', () => {})
      this.retryQueue = new TypedQueue(queueDef, this.retryConnection, this.prefix)
    }
    return this.retryQueue
  }

  /**
   * A temporary error is retried well before the next interval, backing off: the delay
   * roughly doubles with the outage (the time since temperrors began), between retryMin
   * and retryMax. One follow-up per run, so chains never multiply; a pass ends the chain.
   * A lost enqueue only means the next interval's sweep notices instead.
   */
  private async retryLater(did: string, rkey: string, since: Date): Promise<void> {
    const now = this.clock.now().getTime()
    const delay = Math.min(this.retry.maxMs, Math.max(this.retry.minMs, now - since.getTime()))
    await this.followUps()
      .enqueue(
        { did, rkey, trigger: 'schedule', requestedAt: new Date(now).toISOString() },
        { jobId: `${RETRY_JOB_PREFIX}${attestationJobKey(did, rkey)}_${now}`, delay },
      )
      .catch((err: Error) => this.logger.warn({ did, err: err.message }, 'could not schedule a retry'))
  }

  /**
   * Why this job needs no run, or null. A request from the repo (ingest, identity) or a
   * holder's release is the
   * one the row still holds, or was overtaken: a newer write asked again (and has a job of
   * its own) or a run already answered it. A "check now" or a retry is answered by any run
   * of the attestation that started after it was asked. So a stranger rewriting a record
   * in a loop leaves one live job behind, and deferred jobs collapse into one run.
   */
  private async answeredAlready(
    att: Attestation,
    payload: Payload,
    requestedAt: Date,
    isRetry: boolean,
  ): Promise<string | null> {
    if (payload.trigger === 'ingest' || payload.trigger === 'identity' || payload.trigger === 'release') {
      if (att.verifyRequestedAt?.getTime() === requestedAt.getTime()) return null
      return att.verifyRequestedAt ? 'a newer request is pending' : 'the request was answered or withdrawn'
    }
    if (payload.trigger !== 'admin' && !isRetry) return null
    const [later] = await this.db
      .select({ id: verificationRuns.id })
      .from(verificationRuns)
      .where(
        and(
          eq(verificationRuns.did, att.did),
          gt(verificationRuns.startedAt, requestedAt),
          eq(verificationRuns.attestationId, att.id),
        ),
      )
      .limit(1)
    return later ? 'a run started after it was asked' : null
  }

  /** The request is answered: unless a newer one arrived meanwhile, it is cleared. */
  private async clearRequest(tx: Tx | Db, did: string, rkey: string, requestedAt: Date) {
    await tx
      .update(attestations)
      .set({ verifyRequestedAt: null, verifyTrigger: null })
      .where(
        and(eq(attestations.did, did), eq(attestations.rkey, rkey), lte(attestations.verifyRequestedAt, requestedAt)),
      )
  }
}

type Attestation = typeof attestations.$inferSelect

/** Why a verification of `checked` no longer speaks for the attestation as it is now, or null. */
export function outdatedBy(checked: Attestation, now: Attestation | undefined): string | null {
  if (!now || now.deleted) return 'the attestation record was deleted'
  if (now.state !== 'valid') return `the attestation was rejected: ${now.rejectionReason ?? 'no reason recorded'}`
  const same =
    now.cid === checked.cid &&
    now.domain === checked.domain &&
    now.dkimSelectors.join('\n') === checked.dkimSelectors.join('\n')
  return same ? null : 'a newer version of the attestation arrived (it is verified on its own)'
}
