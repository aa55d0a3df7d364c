import { auditLog, domains, type MemberStatus, memberStatusChanges, members } from '@atmos/db'
import type { memberStatusChanged, TypedQueue } from '@atmos/queues'
import { and, eq, isNull, lt, sql } from 'drizzle-orm'
import type { Executor } from './executor.ts'
import { emitStatusWebhook } from './webhook-events.ts'

export type StatusQueue = TypedQueue<typeof memberStatusChanged>

export type StatusChangeResult = {
  memberId: number
  did: string
  from: MemberStatus
  to: MemberStatus
  /** The member_status_changes row; 0 when nothing changed and no row exists. */
  changeId: number
  changed: boolean
  /** False when Redis did not take the event; the change is recorded either way. */
  enqueued: boolean
}

export class UnknownMemberError extends Error {
  override name = 'UnknownMemberError'
}

const ENQUEUE_TIMEOUT_MS = 3000

/** The job id of a change's event: a retried enqueue of the same change is the same job. */
export function statusJobId(changeId: number): string {
  return `status-change-${changeId}`
}

/**
 * Moves a member to `status`, records who and why in member_status_changes (one
 * transaction with the update), then tells the labeler through `member-status-changed`:
 * a suspension negates relay-member, a reinstatement re-issues it. Asking for the status
 * the member already has changes nothing and sends nothing.
 */
export async function setMemberStatus(
  db: Executor,
  queue: StatusQueue,
  did: string,
  status: MemberStatus,
  reason: string,
  actor: string,
): Promise<StatusChangeResult> {
  if (!reason.trim()) throw new Error('a status change needs a reason')
  const result = await db.transaction(async (tx) => {
    const [m] = await tx
      .select({ id: members.id, did: members.did, status: members.status })
      .from(members)
      .where(eq(members.did, did))
      .for('update')
    if (!m) throw new UnknownMemberError(`no member ${did}`)
    if (m.status === status) {
      const [last] = await tx
        .select({ id: memberStatusChanges.id })
        .from(memberStatusChanges)
        .where(eq(memberStatusChanges.memberId, m.id))
        .orderBy(sql`${memberStatusChanges.id} desc`)
        .limit(1)
      return { memberId: m.id, did: m.did, from: m.status, to: status, changeId: last?.id ?? 0, changed: false }
    }
    await tx
      .update(members)
      .set({
        status,
        statusReason: reason,
        updatedAt: new Date(),
        suspendedAt: status === 'suspended' ? new Date() : null,
        // Warming counts from the first activation; a reinstatement does not restart it.
        ...(status === 'active' ? { activatedAt: sql`coalesce(${members.activatedAt}, now())` } : {}),
      })
      .where(eq(members.id, m.id))
    if (status === 'active') {
      // A domain of a member that was never active (enrolled pending) starts warming now, with its member.
      await tx
        .update(domains)
        .set({ activatedAt: sql`coalesce(${domains.activatedAt}, now())` })
        .where(and(eq(domains.memberId, m.id), isNull(domains.removedAt), eq(domains.status, 'active')))
    }
    const [change] = await tx
      .insert(memberStatusChanges)
      .values({ memberId: m.id, fromStatus: m.status, toStatus: status, reason, actor })
      .returning({ id: memberStatusChanges.id })
    await tx.insert(auditLog).values({
      actor,
      action: memberAction(m.status, status),
      did: m.did,
      memberId: m.id,
      detail: { reason, from: m.status, to: status, changeId: change!.id },
    })
    await emitStatusWebhook(tx, {
      memberId: m.id,
      did: m.did,
      from: m.status,
      to: status,
      reason,
      changeId: change!.id,
    })
    return { memberId: m.id, did: m.did, from: m.status, to: status, changeId: change!.id, changed: true }
  })
  return announce(db, queue, result, status, reason)
}

function memberAction(from: MemberStatus, to: MemberStatus): string {
  if (to === 'suspended') return 'member.suspended'
  if (to === 'pending') return 'member.pending'
  return from === 'pending' ? 'member.activated' : 'member.reinstated'
}

/** After the commit: the labeler hears of a recorded change (or, when Redis fails, the outbox sends it later). */
async function announce<R extends Omit<StatusChangeResult, 'enqueued'>>(
  db: Executor,
  queue: StatusQueue,
  result: R,
  status: MemberStatus,
  reason: string,
): Promise<R & { enqueued: boolean }> {
  if (!result.changed) return { ...result, enqueued: false }
  const enqueued = await notifyStatusChange(db, queue, {
    did: result.did,
    status,
    reason,
    changeId: result.changeId,
  }).then(
    () => true,
    () => false,
  )
  return { ...result, enqueued }
}

export type DomainStatusChangeResult = StatusChangeResult & { domainId: number; domain: string }

export class UnknownDomainError extends Error {
  override name = 'UnknownDomainError'
}

/**
 * Moves one of a member's domains (held now: not removed) to `status`, the member and its
 * other domains untouched: the history row names the domain (member_status_changes.domain_id),
 * an audit_log row says who did it, and the same outbox and `member-status-changed` event as
 * setMemberStatus tell the labeler to recompute the DID's labels (relay-member stands while
 * another of its domains still admits mail). Asking for the status the domain already has
 * changes nothing and sends nothing.
 */
export async function setDomainStatus(
  db: Executor,
  queue: StatusQueue,
  domain: string,
  status: 'active' | 'suspended',
  reason: string,
  actor: string,
): Promise<DomainStatusChangeResult> {
  if (!reason.trim()) throw new Error('a status change needs a reason')
  const name = domain.trim().toLowerCase().replace(/\.$/, '')
  const result = await db.transaction(async (tx) => {
    const [d] = await tx
      .select({ id: domains.id, memberId: domains.memberId, status: domains.status, did: members.did })
      .from(domains)
      .innerJoin(members, eq(members.id, domains.memberId))
      .where(and(eq(domains.domain, name), isNull(domains.removedAt)))
      .for('update', { of: domains })
    if (!d) throw new UnknownDomainError(`no member holds ${name} in the relay`)
    const base = { memberId: d.memberId, did: d.did, domainId: d.id, domain: name, from: d.status, to: status }
    if (d.status === status) {
      const [last] = await tx
        .select({ id: memberStatusChanges.id })
        .from(memberStatusChanges)
        .where(eq(memberStatusChanges.domainId, d.id))
        .orderBy(sql`${memberStatusChanges.id} desc`)
        .limit(1)
      return { ...base, changeId: last?.id ?? 0, changed: false }
    }
    await tx
      .update(domains)
      .set({
        status,
        statusReason: reason,
        updatedAt: new Date(),
        suspendedAt: status === 'suspended' ? new Date() : null,
        // Warming counts from the domain's first activation; a reinstatement does not restart it.
        ...(status === 'active' ? { activatedAt: sql`coalesce(${domains.activatedAt}, now())` } : {}),
      })
      .where(eq(domains.id, d.id))
    const [change] = await tx
      .insert(memberStatusChanges)
      .values({ memberId: d.memberId, domainId: d.id, fromStatus: d.status, toStatus: status, reason, actor })
      .returning({ id: memberStatusChanges.id })
    await tx.insert(auditLog).values({
      actor,
      action: status === 'suspended' ? 'domain.suspended' : 'domain.reinstated',
      did: d.did,
      domain: name,
      memberId: d.memberId,
      detail: { reason, from: d.status, to: status, changeId: change!.id },
    })
    await emitStatusWebhook(tx, { ...base, reason, changeId: change!.id })
    return { ...base, changeId: change!.id, changed: true }
  })
  return announce(db, queue, result, status, reason)
}

/**
 * Enqueues the event for a recorded change, then marks the change notified; a change left
 * unmarked (Redis was down, the process died in between) is sent again by
 * republishStatusChanges. The job id makes a repeat harmless, and the labeler reads the
 * member's current status when it handles one, so an old event arriving late is harmless too.
 */
export async function notifyStatusChange(
  db: Executor,
  queue: StatusQueue,
  change: { did: string; status: MemberStatus; reason: string; changeId: number },
): Promise<void> {
  // Bounded: while Redis is away bullmq waits for it indefinitely, and the outbox covers us.
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    queue.enqueue(
      { did: change.did, status: change.status, reason: change.reason.slice(0, 1000), changeId: change.changeId },
      { jobId: statusJobId(change.changeId) },
    ),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('Redis did not take the event in time')), ENQUEUE_TIMEOUT_MS)
    }),
  ]).finally(() => clearTimeout(timer))
  await db
    .update(memberStatusChanges)
    .set({ notifiedAt: new Date() })
    .where(eq(memberStatusChanges.id, change.changeId))
}

/**
 * Sends the events of status changes the labeler has not applied: never reached Redis, or
 * reached it and were lost with it (Redis keeps nothing on disk), older than `graceMs` so
 * that a change being published right now is left to its own publisher. One still waiting
 * or running in the queue is left alone; one whose job finished without being applied is
 * replaced (its id would make the enqueue a no-op). Returns how many it sent; one that fails
 * again waits for the next run.
 */
export async function republishStatusChanges(
  db: Executor,
  queue: StatusQueue,
  opts: { graceMs?: number; limit?: number } = {},
): Promise<number> {
  const cutoff = new Date(Date.now() - (opts.graceMs ?? 10_000))
  const pending = await db
    .select({
      changeId: memberStatusChanges.id,
      did: members.did,
      status: memberStatusChanges.toStatus,
      reason: memberStatusChanges.reason,
      notifiedAt: memberStatusChanges.notifiedAt,
    })
    .from(memberStatusChanges)
    .innerJoin(members, eq(members.id, memberStatusChanges.memberId))
    .where(and(isNull(memberStatusChanges.appliedAt), lt(memberStatusChanges.at, cutoff)))
    .orderBy(memberStatusChanges.id)
    .limit(opts.limit ?? 500)
  let sent = 0
  for (const { notifiedAt, ...change } of pending) {
    if (notifiedAt) {
      const job = await queue.queue.getJob(statusJobId(change.changeId))
      if (job) {
        const state = await job.getState()
        if (state !== 'completed' && state !== 'failed') continue
        await job.remove()
      }
    }
    await notifyStatusChange(db, queue, change)
    sent++
  }
  return sent
}
