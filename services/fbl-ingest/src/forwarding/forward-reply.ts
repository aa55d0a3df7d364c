import { randomUUID } from 'node:crypto'
import { type Db, inboundForwards, inboundMessages, spoolPoolMessage, type Tx } from '@atmos/db'
import { type SigningKeys, signAsPool } from '@atmos/dkim'
import type { deliverMessage, TypedQueue } from '@atmos/queues'
import type { Logger } from '@atmos/runtime'
import { withTimeout } from '@atmos/runtime'
import { eq, sql } from 'drizzle-orm'
import type { DNSResolver } from 'mailauth'
import type { PoolIdentity } from '../pool.ts'
import { type MemberDomain, readMemberDomain } from './member-domains.ts'
import { ownArcSeals, sealForward } from './seal.ts'
import { srsAddress } from './srs.ts'

// A reply to a member's domain goes on to the domain's forward-to address as the message
// itself (not wrapped: the member's mail client must see the sender's From and thread it),
// through the relay's spool and delivery workers (retries, shaping, TLS policy). On the way:
// our Received line, the pool's ARC seal over what was found at receipt, the pool's DKIM
// signature (d= the pool: no alignment with the From, but a domain for the provider to
// judge the forwarder by), and an SRS envelope sender, so that the forward-to provider's
// SPF check is of the pool and its bounces come back to the pool, never to the original
// sender. It is the pool's own mail (member_id null): it costs the member no volume or
// reputation, and the relay sends no bounce notice for it.
//
// A message that fails its own DMARC at receipt (a p=reject forgery, say) is forwarded all
// the same: the seal carries that verdict to the provider, whose filter decides, as it
// would had the mail come straight. The pool runs no spam filter of its own.

/** How long the relay keeps trying to deliver a forward. */
const FORWARD_LIFETIME_MS = 3 * 86_400_000

export type ReplyForwarderDeps = {
  db: Db
  pool: PoolIdentity
  /** The pool's DKIM key: seals and signs. Asked at the first forward (the KEK file is read then). */
  keys: () => SigningKeys
  deliveries: TypedQueue<typeof deliverMessage>
  logger: Logger
  resolver: DNSResolver
  /** Our name in Received and the results' authserv-id. */
  mta: string
  authTimeoutMs: number
  maxHops: number
  perDomainPerHour: number
}

export type ReplyRow = Pick<
  typeof inboundMessages.$inferSelect,
  'id' | 'raw' | 'mailFrom' | 'rcptTo' | 'remoteAddress' | 'heloName' | 'receivedAt'
>

/** Per domain: forwarded (with the relay message), or refused with the reason recorded. */
export type ReplyOutcome = { domain: string; state: 'forwarded' | 'refused'; messageId?: string; reason?: string }

export class ReplyForwarder {
  private readonly d: ReplyForwarderDeps

  constructor(deps: ReplyForwarderDeps) {
    this.d = deps
  }

  /**
   * Forwards one stored reply to each recipient domain's forward-to address, or records why
   * not, in the transaction that marks the inbound row done. Returns undefined when another
   * worker finished the row meanwhile.
   */
  async forward(row: ReplyRow): Promise<ReplyOutcome[] | undefined> {
    const { db, pool, logger } = this.d
    // One forward per domain however many of its addresses the message names.
    const byDomain = new Map<string, string>()
    for (const r of row.rcptTo) {
      const domain = r.slice(r.lastIndexOf('@') + 1).toLowerCase()
      if (!byDomain.has(domain)) byDomain.set(domain, r.toLowerCase())
    }
    const hops = ownArcSeals(row.raw, pool.domain)
    const returnPath =
      srsAddress({ secret: pool.verp.secret, bounceDomain: pool.verp.bounceDomain }, row.mailFrom) ?? ''
    // Sealing is DNS and CPU: done once, before the transaction, and only if anything may go.
    let body: Buffer | undefined
    const prepare = async (): Promise<Buffer> => {
      if (body) return body
      const received = Buffer.from(receivedLine(row, this.d.mta), 'latin1')
      const withReceived = Buffer.concat([received, toCrlf(row.raw)])
      const key = await this.d.keys().pool(pool.domain)
      if (!key) throw new Error(`no active DKIM key for ${pool.domain} to seal forwards: run relay keys init`)
      const sealed = await sealForward(withReceived, key, {
        ip: row.remoteAddress ?? '0.0.0.0',
        helo: row.heloName ?? '',
        mailFrom: row.mailFrom,
        mta: this.d.mta,
        resolver: this.d.resolver,
        timeoutMs: this.d.authTimeoutMs,
      })
      if (!sealed.sealed) {
        logger.warn({ inboundId: row.id, arc: sealed.arc, err: sealed.sealError }, 'forward not ARC-sealed')
      }
      const signed = await signAsPool(
        this.d.keys(),
        pool.domain,
        Buffer.concat([Buffer.from(sealed.headers, 'latin1'), withReceived]),
        'forwards',
      )
      body = signed
      logger.debug({ inboundId: row.id, dmarc: sealed.dmarc, arc: sealed.arc }, 'forward sealed')
      return signed
    }
    // Look-ups and the decision of what may go happen before signing, outside the lock.
    const plans: { domain: string; recipient: string; found: MemberDomain | null; refuse?: string }[] = []
    for (const [domain, recipient] of byDomain) {
      const found = await readMemberDomain(db, domain)
      plans.push({ domain, recipient, found, ...refusal(found, domain, hops, this.d.maxHops) })
    }
    for (const p of plans) {
      if (p.refuse || !p.found?.forwardTo) continue
      if (await this.loopsBack(domain(p.found.forwardTo), p.domain)) {
        p.refuse = `forward-to ${p.found.forwardTo} is at an enrolled domain whose mail comes back here: a loop, not forwarded`
      }
    }
    const wanted = plans.some((p) => !p.refuse && p.found)
    const signed = wanted ? await prepare() : undefined
    const outcomes = await db.transaction(async (tx) => {
      if (!(await claim(tx, row.id))) return undefined
      const out: ReplyOutcome[] = []
      for (const p of plans) {
        if (!p.found) continue // the domain was given up since RCPT: nobody to record it for
        let reason = p.refuse
        if (!reason && (await overRate(tx, p.found.domainId, this.d.perDomainPerHour))) {
          reason = `forward limit of ${this.d.perDomainPerHour} an hour for ${p.domain} reached: kept, not forwarded`
        }
        const forwardTo = p.found.forwardTo ?? ''
        if (reason || !signed) {
          await tx.insert(inboundForwards).values({
            inboundId: row.id,
            memberId: p.found.memberId,
            domainId: p.found.domainId,
            recipient: p.recipient,
            forwardTo,
            state: 'refused',
            reason: (reason ?? 'not forwarded').slice(0, 500),
            returnPath,
          })
          out.push({ domain: p.domain, state: 'refused', reason: reason ?? 'not forwarded' })
          continue
        }
        const id = randomUUID()
        await spoolPoolMessage(tx, {
          id,
          envelopeFrom: returnPath,
          returnPath,
          messageIdHeader: originalMessageId(row.raw) ?? '',
          body: signed,
          to: forwardTo,
          lifetimeMs: FORWARD_LIFETIME_MS,
        })
        await tx.insert(inboundForwards).values({
          inboundId: row.id,
          memberId: p.found.memberId,
          domainId: p.found.domainId,
          recipient: p.recipient,
          forwardTo,
          state: 'forwarded',
          messageId: id,
          returnPath,
        })
        out.push({ domain: p.domain, state: 'forwarded', messageId: id })
      }
      const first = out.find((o) => o.messageId)?.messageId ?? null
      await tx
        .update(inboundMessages)
        .set({
          kind: 'reply',
          state: first ? 'forwarded' : 'processed',
          forwardedMessageId: first,
          processedAt: new Date(),
        })
        .where(eq(inboundMessages.id, row.id))
      return out
    })
    if (!outcomes) return undefined
    for (const o of outcomes) {
      if (!o.messageId) continue
      // Spooled is durable; if Redis does not take the job, the relay's reconciler will.
      await withTimeout(
        this.d.deliveries.enqueue({ messageId: o.messageId }, { jobId: o.messageId }),
        1000,
        'redis',
      ).catch((err: Error) =>
        logger.warn({ err: err.message, messageId: o.messageId }, 'forward not enqueued; the relay reconciler will'),
      )
    }
    logger.info({ inboundId: row.id, forwards: outcomes, srs: returnPath !== '' }, 'reply forwarded')
    return outcomes
  }

  /**
   * True when mail to `target` would come back to `origin`: the forward-to is at an enrolled
   * domain whose own forward-to leads (within a few steps) back to a domain already visited.
   */
  private async loopsBack(target: string, origin: string): Promise<boolean> {
    const seen = new Set([origin])
    let next = target
    for (let i = 0; i < 5 && next; i++) {
      if (seen.has(next)) return true
      seen.add(next)
      const found = await readMemberDomain(this.d.db, next)
      if (!found?.forwardTo || found.status === 'pending') return false
      next = domain(found.forwardTo)
    }
    return false
  }
}

function refusal(found: MemberDomain | null, name: string, hops: number, maxHops: number): { refuse?: string } {
  if (!found) return {}
  if (found.status === 'pending') return { refuse: `${name} is not enrolled yet: not forwarded` }
  if (!found.forwardTo) return { refuse: `${name} has no forward-to address: not forwarded` }
  if (found.forwardToSuppressed) {
    return { refuse: `forward-to ${found.forwardTo} is on the member's suppression list: not forwarded` }
  }
  if (hops >= maxHops) {
    return { refuse: `the message already carries ${hops} ARC seals of the pool: a loop, not forwarded` }
  }
  return {}
}

const domain = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase()

/** Whether the domain made its hour's forwards, counted under a per-domain lock (every process together). */
async function overRate(tx: Tx, domainId: number, perHour: number): Promise<boolean> {
  if (perHour <= 0) return false
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext('fbl-ingest forwards'), ${domainId}::int)`)
  const [row] = await tx.execute<{ n: number }>(sql`
    select count(*)::int as n from inbound_forwards
    where domain_id = ${domainId} and state <> 'refused' and created_at > now() - interval '1 hour'`)
  return (row?.n ?? 0) >= perHour
}

/** Locks the row and checks nobody finished it meanwhile (two jobs for one message). */
async function claim(tx: Tx, inboundId: number): Promise<boolean> {
  const rows = await tx.execute<{ state: string }>(
    sql`select state from inbound_messages where id = ${inboundId} for update`,
  )
  return rows[0]?.state === 'received'
}

/** Our trace line (RFC 5321 4.4); what the client said is reduced to printable ASCII. */
function receivedLine(row: ReplyRow, mta: string): string {
  const clean = (v: string | null) => (v ?? 'unknown').replace(/[^\x21-\x7e]/g, '').slice(0, 200) || 'unknown'
  const date = row.receivedAt.toUTCString().replace('GMT', '+0000')
  return `Received: from ${clean(row.heloName)} (${clean(row.remoteAddress)})\r\n\tby ${mta} (Atmosphere Mail) with ESMTP id in${row.id};\r\n\t${date}\r\n`
}

function toCrlf(raw: Buffer): Buffer {
  const text = raw.toString('latin1')
  return text.includes('\r\n') ? raw : Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1')
}

function originalMessageId(raw: Buffer): string | undefined {
  const head = raw.toString('latin1', 0, Math.min(raw.length, 65536))
  const end = head.search(/\r?\n\r?\n/)
  const m = /^message-id:[ \t]*(<[^<>\s]{1,250}>)[ \t]*$/im.exec(end >= 0 ? head.slice(0, end) : head)
  return m?.[1]
}
