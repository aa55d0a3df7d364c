import { randomUUID } from 'node:crypto'
import type { Pool } from '@atmos/db'
import { type SigningKeys, signMessage } from '@atmos/dkim'
import { countingDay, dailyCapFor } from '@atmos/enrolment'
import { messageToken, TRANSACTIONAL_CATEGORIES, unsubscribeToken, verpAddress } from '@atmos/mail-feedback'
import type { deliverMessage, TypedQueue } from '@atmos/queues'
import { Batcher, type Logger, withTimeout } from '@atmos/runtime'
import { checkRecipient } from '../message/addresses.ts'
import { MessageFormatError, parseMessage } from '../message/headers.ts'
import type { ReceivedTrace } from '../message/received.ts'
import { HeaderPolicyError, prepareMessage } from '../message/rewrite.ts'
import { admitSender } from './admission.ts'
import type { SubmissionConfig } from './config.ts'
import type { RefusalReason, SubmissionMetrics } from './metrics.ts'
import { OverCapError, type SpoolRequest, SubmissionSpool } from './spool.ts'
import { StandingReader } from './standing.ts'
import { SuppressionLookup } from './suppressions.ts'
import { recipientDomainsOf, type ThrottleRules } from './throttle.ts'

// The one sending policy of the relay, called by SMTP submission (session.ts) and by the HTTP
// send API (../api/): who may send as which domain, to whom, how a message is rewritten and
// signed, and that it is spooled before it is acknowledged. A refusal is a Reply, the SMTP
// reply the relay has always given; the send API maps its `reason` to an HTTP error, so both
// edges refuse exactly the same things.

/** A refusal: the SMTP code, the text with its enhanced status, and the reason the metrics and the API read. */
export class Reply extends Error {
  readonly responseCode: number
  readonly reason: RefusalReason
  constructor(code: number, text: string, reason: RefusalReason) {
    super(text)
    this.responseCode = code
    this.reason = reason
  }
}

/** A refusal for the whole day's cap: when it lifts, for the API's Retry-After. */
export class OverCapReply extends Reply {
  readonly resetsAt: Date
  constructor(tx: Transaction) {
    super(
      451,
      `4.7.1 ${tx.domain} reached its limit of ${tx.cap} recipients today; it resets at ${tx.resetsAt.toISOString()}`,
      'over_cap',
    )
    this.resetsAt = tx.resetsAt
  }
}

/** Who sends: a member, and the one domain its credential or API key may send as (null: any it holds). */
export type Sender = { memberId: number; did: string; scopeDomainId: number | null }

/**
 * What a message needs beyond its sender, decided when its envelope sender is admitted: the
 * domain it is sent as (its keys sign, its cap counts), the cap, and REQUIRETLS.
 */
export type Transaction = {
  domainId: number
  domain: string
  cap: number
  day: string
  resetsAt: Date
  sentToday: number
  requireTls: boolean
}

/** How the copies' Received field describes the way the message came in. */
export type Arrival = {
  /** RFC 3848 `with` (ESMTPSA…) or, for the send API, HTTPS/HTTP. */
  protocol: string
  client?: { helo: string; address: string }
}

/** A message signed for each recipient and ready to spool, with what its answer names. */
export type SignedMessage = {
  request: SpoolRequest
  messageIdHeader: string
}

export type AcceptDeps = {
  config: SubmissionConfig
  sql: Pool
  logger: Logger
  keys: SigningKeys
  deliveries: TypedQueue<typeof deliverMessage>
  metrics: SubmissionMetrics
  pool: { domain: string; bounceDomain: string; verpPrefix: string; feedbackSenderId: string }
  tokenSecret: string
  /** Spike and spray rules (throttle.ts); absent: none. */
  throttle?: ThrottleRules
}

/** A deferral by a throttle rule: for the API's Retry-After (the rules count the last hour). */
export class ThrottledReply extends Reply {
  readonly rule: string
  constructor(rule: string, text: string) {
    super(451, `4.7.1 ${text}`, 'throttled')
    this.rule = rule
  }
}

/** The most messages a delivery job names (the deliver-message contract's bound). */
const MAX_MESSAGES_A_JOB = 1000

export class SubmissionPolicy {
  private readonly deps: AcceptDeps
  private readonly transactional: Set<string>
  private readonly standing: StandingReader
  private readonly suppressions: SuppressionLookup
  private readonly spool: SubmissionSpool
  /** Concurrent submissions' delivery jobs go to Redis together. */
  private readonly enqueues: Batcher<string[], undefined>

  constructor(deps: AcceptDeps) {
    this.deps = deps
    this.transactional = new Set([...TRANSACTIONAL_CATEGORIES, ...deps.config.unsubscribe.transactionalCategories])
    this.standing = new StandingReader(deps.sql, deps.config.labelerDid)
    this.suppressions = new SuppressionLookup(deps.sql)
    this.spool = new SubmissionSpool(deps.sql)
    // One delivery job names every message the concurrent submissions spooled together: bullmq
    // costs a few Redis scripts a job on both sides, more than a message's claim. The job id
    // is its first message's (prefixed, so that it never collides with the reconciler's
    // one-message jobs): a retried enqueue of the same batch is a no-op. A message in a job
    // and also re-enqueued by the reconciler is still delivered once (the claim's lease).
    this.enqueues = new Batcher(async (batches: string[][]) => {
      const ids = batches.flat()
      const jobs = []
      for (let i = 0; i < ids.length; i += MAX_MESSAGES_A_JOB) {
        const messageIds = ids.slice(i, i + MAX_MESSAGES_A_JOB)
        jobs.push({ payload: { messageIds }, opts: { jobId: `b-${messageIds[0]}` } })
      }
      await deps.deliveries.enqueueBulk(jobs)
      return batches.map(() => undefined)
    })
  }

  /** Counts a refusal by reason and hands it back to be thrown. */
  refuse<R extends Reply>(reply: R): R {
    this.deps.metrics.refused.inc({ reason: reply.reason })
    return reply
  }

  /**
   * Admits an envelope sender (admission.ts) and reads its domain's cap; refuses a domain
   * whose cap is already reached. Read fresh for every message.
   */
  async admit(sender: Sender, envelopeFrom: string, requireTls: boolean, now = new Date()): Promise<Transaction> {
    // The envelope sender is held to the recipients' plain form (no quoted or routed local
    // parts, a host name) and may not end in a dot: the same absolute name From refuses.
    const checked = checkRecipient(envelopeFrom)
    if (!checked.ok || envelopeFrom.endsWith('.')) {
      throw this.refuse(
        new Reply(
          550,
          `5.7.1 Envelope sender must be an address at a domain ${sender.did} holds in the relay`,
          'foreign_sender',
        ),
      )
    }
    const { day, resetsAt } = countingDay(now)
    const admission = admitSender(await this.standing.read(sender.memberId, day), checked, sender.scopeDomainId)
    if (!admission.ok) throw this.refuse(new Reply(admission.code, admission.text, admission.reason))
    const { domain } = admission
    const { config } = this.deps
    const { cap } = dailyCapFor(domain.activatedAt, now, config.warmingTiers, config.dailyCap)
    const tx: Transaction = {
      domainId: domain.id,
      domain: domain.domain,
      cap,
      day,
      resetsAt,
      sentToday: domain.sentToday,
      requireTls,
    }
    if (tx.sentToday >= cap) throw this.refuse(new OverCapReply(tx))
    return tx
  }

  /**
   * Checks one more recipient after the `earlier` accepted ones (SMTP's RCPT): its syntax, the
   * message's recipient limit, the member's suppression list, the domain's cap and the
   * throttle rules. The address comes back normalized.
   */
  async checkRecipient(
    sender: Sender,
    tx: Transaction,
    address: string,
    earlier: readonly string[],
  ): Promise<{ address: string; domain: string }> {
    const rcpt = this.recipientSyntax(address)
    const max = this.deps.config.maxRecipients
    if (earlier.length >= max) {
      throw this.refuse(new Reply(452, `4.5.3 Too many recipients: at most ${max} a message`, 'too_many_recipients'))
    }
    await this.notSuppressed(sender, tx, address, rcpt.address)
    if (tx.sentToday + earlier.length + 1 > tx.cap) throw this.refuse(new OverCapReply(tx))
    // At RCPT, not DATA: a deferral defers only the recipients past the threshold, before any body is sent.
    await this.throttle(sender, tx, [...earlier, rcpt.address])
    return rcpt
  }

  /** Defers (451 4.7.1 naming the rule) when an enforced spike or spray rule says so; shadow rules only record. */
  private async throttle(sender: Sender, tx: Transaction, recipients: string[]): Promise<void> {
    const throttled = await this.deps.throttle?.check({
      memberId: sender.memberId,
      domainId: tx.domainId,
      domain: tx.domain,
      recipientDomains: recipientDomainsOf(recipients),
    })
    if (throttled?.defer) throw this.refuse(new ThrottledReply(throttled.defer.rule, throttled.defer.text))
  }

  /**
   * The recipients of one message at once (the send API): each checked for syntax and the
   * member's suppression list as a RCPT is, the bad ones set aside with the refusal SMTP would
   * give; the rest (each distinct address once) must fit the domain's cap together, or the
   * whole message is refused. The caller bounds how many there are.
   */
  async screenRecipients(
    sender: Sender,
    tx: Transaction,
    addresses: string[],
  ): Promise<{
    accepted: Array<{ address: string; domain: string }>
    rejected: Array<{ address: string; reply: Reply }>
  }> {
    const results = await Promise.all(
      addresses.map(async (address) => {
        try {
          const rcpt = this.recipientSyntax(address)
          await this.notSuppressed(sender, tx, address, rcpt.address)
          return { address, rcpt }
        } catch (err) {
          if (err instanceof Reply) return { address, reply: err }
          throw err
        }
      }),
    )
    const seen = new Set<string>()
    const accepted: Array<{ address: string; domain: string }> = []
    const rejected: Array<{ address: string; reply: Reply }> = []
    for (const r of results) {
      if (r.reply) rejected.push({ address: r.address, reply: r.reply })
      else if (r.rcpt && !seen.has(r.rcpt.address.toLowerCase())) {
        seen.add(r.rcpt.address.toLowerCase())
        accepted.push(r.rcpt)
      }
    }
    if (tx.sentToday + accepted.length > tx.cap) throw this.refuse(new OverCapReply(tx))
    // One check for the whole message, as the rules would see its recipients one RCPT at a time.
    if (accepted.length)
      await this.throttle(
        sender,
        tx,
        accepted.map((r) => r.address),
      )
    return { accepted, rejected }
  }

  private recipientSyntax(address: string): { address: string; domain: string } {
    const rcpt = checkRecipient(address)
    if (!rcpt.ok) throw this.refuse(new Reply(553, `5.1.3 <${address}>: ${rcpt.reason}`, 'recipient_syntax'))
    return { address: rcpt.address, domain: rcpt.domain }
  }

  private async notSuppressed(sender: Sender, tx: Transaction, given: string, address: string): Promise<void> {
    const suppressed = await this.suppressions.find(sender.memberId, address)
    if (!suppressed) return
    const why =
      suppressed.reason === 'hard_bounce'
        ? 'it bounced permanently'
        : suppressed.reason === 'complaint'
          ? 'its owner reported your mail as spam'
          : suppressed.reason === 'unsubscribe'
            ? 'its owner unsubscribed'
            : 'an operator suppressed it'
    throw this.refuse(
      new Reply(
        550,
        `5.1.1 <${given}> is on the suppression list of ${sender.did} (sending as ${tx.domain}) since ${suppressed.since}: ${why}`,
        'suppressed',
      ),
    )
  }

  /**
   * Rewrites a message under the header policy (rewrite.ts) and signs one copy per recipient
   * with every active key of the domain sent as (RSA and Ed25519), then the pool's. The
   * recipients are ones checkRecipient accepted.
   */
  async sign(input: {
    sender: Sender
    tx: Transaction
    envelopeFrom: string
    message: Buffer
    recipients: string[]
    arrival: Arrival
  }): Promise<SignedMessage> {
    const { sender, tx, arrival } = input
    const { config, keys, pool, logger } = this.deps
    let prepared: ReturnType<typeof prepareMessage>
    try {
      const parsed = parseMessage(input.message)
      if (parsed.eol !== '\r\n') throw new MessageFormatError('header lines must end with CRLF')
      prepared = prepareMessage(parsed, {
        memberId: sender.memberId,
        did: sender.did,
        domain: tx.domain,
        poolId: pool.feedbackSenderId,
      })
    } catch (err) {
      if (err instanceof HeaderPolicyError) {
        throw this.refuse(
          new Reply(err.code, err.message, err.message.startsWith('5.7.1') ? 'foreign_from' : 'bad_headers'),
        )
      }
      if (err instanceof MessageFormatError) throw this.refuse(new Reply(550, `5.6.0 ${err.message}`, 'bad_headers'))
      throw err
    }

    const [domainKeys, poolKey] = await Promise.all([keys.domain(tx.domainId), keys.pool(pool.domain)])
    if (!domainKeys.length || !poolKey) {
      logger.error(
        { member: sender.did, domain: tx.domain, domainKeys: domainKeys.length, poolKey: !!poolKey },
        'no DKIM key to sign with',
      )
      throw this.refuse(new Reply(451, '4.3.0 Signing is not available right now; try again later', 'no_signing_key'))
    }
    const verp = { bounceDomain: pool.bounceDomain, prefix: pool.verpPrefix, secret: this.deps.tokenSecret }
    const now = new Date()
    const single = input.recipients.length === 1
    // Mail without a category gets no unsubscribe: the relay cannot tell a password reset from
    // a newsletter, and an unsubscribe on a login mail lets a recipient (or a link scanner's
    // POST) cut himself off from his own account. Bulk senders name their categories; the
    // category-mismatch count is there for those who call bulk mail transactional.
    const offersUnsubscribe = prepared.category !== null && !this.transactional.has(prepared.category)
    const unsub = config.unsubscribe
    const copies = await Promise.all(
      input.recipients.map(async (address) => {
        const checked = checkRecipient(address)
        if (!checked.ok) throw new Error('recipient changed after it was checked')
        const id = randomUUID()
        const received: ReceivedTrace = {
          by: config.hostname,
          protocol: arrival.protocol,
          id,
          ...(single ? { for: checked.address } : {}),
          ...(config.receivedClientAddress && arrival.client ? { client: arrival.client } : {}),
          date: now,
        }
        const returnPath = verpAddress(verp, id)
        // One copy per recipient, so each carries its own token (signed with the rest).
        const links = offersUnsubscribe
          ? {
              https: `${unsub.url.replace(/\/$/, '')}/${unsubscribeToken(verp, { memberId: sender.memberId, recipient: checked.address, messageId: id })}`,
              ...(unsub.mailto ? { mailto: returnPath } : {}),
            }
          : undefined
        return {
          id,
          recipient: checked.address,
          domain: checked.domain,
          returnPath,
          body: await signMessage(
            prepared.forRecipient(messageToken(verp, id), received, links),
            [...domainKeys, poolKey],
            now,
          ),
        }
      }),
    )
    return {
      messageIdHeader: prepared.messageIdHeader,
      request: {
        memberId: sender.memberId,
        domainId: tx.domainId,
        envelopeFrom: input.envelopeFrom,
        messageIdHeader: prepared.messageIdHeader,
        category: prepared.category,
        // Only transactional mail is checked for one body sent to many (the operator's category mismatch).
        bodyHash: prepared.category !== null && !offersUnsubscribe ? prepared.bodyHash() : null,
        copies,
        expiresAt: new Date(now.getTime() + config.messageLifetime),
        day: tx.day,
        cap: tx.cap,
        requireTls: tx.requireTls,
      },
    }
  }

  /**
   * Spools a signed message (by default in the group-committed spool; the send API passes its
   * own transaction that also records the idempotency key), then enqueues its delivery.
   * Returns the spooled copies' ids; refuses with OverCapReply when the cap would be passed.
   */
  async commit(
    sender: Sender,
    tx: Transaction,
    signed: SignedMessage,
    spool: ((req: SpoolRequest) => Promise<string[]>) | undefined = undefined,
    opts: { enqueue: boolean } = { enqueue: true },
  ): Promise<string[]> {
    const { logger } = this.deps
    let ids: string[]
    try {
      ids = await (spool ? spool(signed.request) : this.spool.spool(signed.request))
    } catch (err) {
      if (err instanceof OverCapError) throw this.refuse(new OverCapReply(tx))
      throw err
    }
    if (!ids.length) return ids
    this.deps.metrics.accepted.inc()
    this.deps.metrics.recipients.inc({}, ids.length)
    const size = signed.request.copies.reduce((n, c) => n + c.body.length, 0)
    logger.info({ member: sender.did, domain: tx.domain, messages: ids, size }, 'submission spooled')
    // A caller spooling inside its own transaction enqueues after its commit.
    if (opts.enqueue) await this.enqueue(ids)
    return ids
  }

  /**
   * Spooled is durable: the answer is a success even when Redis is down, and the delivery
   * reconciler enqueues whatever has no job. The job id makes a re-enqueue a no-op.
   */
  async enqueue(ids: string[]): Promise<void> {
    await withTimeout(this.enqueues.call(ids), 1000, 'redis').catch((err: Error) =>
      this.deps.logger.warn({ err: err.message, messages: ids }, 'delivery not enqueued; the reconciler will'),
    )
  }
}
