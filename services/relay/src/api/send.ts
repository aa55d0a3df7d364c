import { createHash } from 'node:crypto'
import type { Pool } from '@atmos/db'
import { type VerifiedApiKey, verifyApiKey } from '@atmos/enrolment'
import type { Logger } from '@atmos/runtime'
import { addressDomain, checkRecipient, isSameOrSubdomain } from '../message/addresses.ts'
import { LineCheck } from '../message/lines.ts'
import { type OverCapReply, Reply, type Sender, type SubmissionPolicy } from '../submission/accept.ts'
import { spoolMessage } from '../submission/spool.ts'
import { composeMessage } from './compose.ts'
import type { ApiConfig } from './config.ts'
import { AlreadyAnswered, findAnswer, recordAnswer, validIdempotencyKey } from './idempotency.ts'
import type { KeyRateLimit } from './rate-limit.ts'
import {
  ERRORS,
  type ErrorBody,
  type ErrorCode,
  fieldName,
  type SendRequest,
  type SendResponse,
  sendRequestSchema,
} from './schema.ts'

/** An answer as the HTTP layer sends it. */
export type Answer = { status: number; body: SendResponse | ErrorBody; headers?: Record<string, string> }

export class ApiError extends Error {
  readonly code: ErrorCode
  readonly field: string | undefined
  readonly headers: Record<string, string> | undefined
  constructor(code: ErrorCode, message: string, opts: { field?: string; headers?: Record<string, string> } = {}) {
    super(message)
    this.code = code
    this.field = opts.field
    this.headers = opts.headers
  }

  answer(): Answer {
    return {
      status: ERRORS[this.code],
      body: { error: { code: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) } },
      ...(this.headers ? { headers: this.headers } : {}),
    }
  }
}

/** The text of a submission refusal without its enhanced status code (`5.7.1 `). */
function replyText(reply: Reply): string {
  return reply.message.replace(/^\d\.\d{1,3}\.\d{1,3} /, '')
}

/**
 * A refusal of the shared submission policy as the API's error: the same decision SMTP
 * answers with its reply, under a stable code.
 */
export function fromReply(reply: Reply, now = Date.now()): ApiError {
  const message = replyText(reply)
  switch (reply.reason) {
    case 'suspended':
    case 'not_active':
      return new ApiError('MEMBER_SUSPENDED', message)
    case 'not_verified':
      return new ApiError('DOMAIN_NOT_VERIFIED', message)
    case 'foreign_sender':
    case 'out_of_scope':
      return new ApiError('DOMAIN_MISMATCH', message, { field: 'from' })
    case 'foreign_from':
      return new ApiError('INVALID_REQUEST', message, { field: 'from' })
    case 'bad_headers':
      return new ApiError('INVALID_REQUEST', message)
    case 'too_many_recipients':
      return new ApiError('INVALID_REQUEST', message, { field: 'to' })
    case 'oversize':
      return new ApiError('PAYLOAD_TOO_LARGE', message)
    case 'over_cap': {
      const resetsAt = (reply as OverCapReply).resetsAt?.getTime() ?? now + 3600_000
      return new ApiError('RATE_LIMITED', message, {
        headers: { 'Retry-After': String(Math.max(1, Math.ceil((resetsAt - now) / 1000))) },
      })
    }
    case 'throttled':
      // The rules count the last hour: an hour from now the figures that fired have moved on.
      return new ApiError('RATE_LIMITED', message, { headers: { 'Retry-After': '3600' } })
    case 'no_signing_key':
      return new ApiError('SERVICE_UNAVAILABLE', message, { headers: { 'Retry-After': '60' } })
    default:
      return new ApiError('INTERNAL', 'the request failed on our side; try again')
  }
}

export type SendDeps = {
  api: ApiConfig
  sql: Pool
  logger: Logger
  policy: SubmissionPolicy
  rateLimit: KeyRateLimit
  /** relay.submission: the recipient limit, message size and host name are the same as for SMTP. */
  maxRecipients: number
  maxSize: number
}

export type SendInput = {
  authorization: string | undefined
  contentType: string | undefined
  idempotencyKey: string | undefined
  /** The client's address, for the Received field when the relay names clients. */
  remoteAddress: string
  /** Reads the body (the server bounds its size). */
  body: () => Promise<Uint8Array>
}

/** The send API's one operation: authenticate, validate, then the submission policy. */
export class SendHandler {
  private readonly deps: SendDeps
  private readonly schema: ReturnType<typeof sendRequestSchema>

  constructor(deps: SendDeps) {
    this.deps = deps
    this.schema = sendRequestSchema({
      maxRecipients: deps.maxRecipients,
      maxAttachments: deps.api.maxAttachments,
      bodyLimit: deps.api.bodyLimit,
    })
  }

  async handle(input: SendInput): Promise<Answer> {
    try {
      return await this.send(input)
    } catch (err) {
      if (err instanceof ApiError) return err.answer()
      if (err instanceof Reply) return fromReply(err).answer()
      throw err
    }
  }

  private async authenticate(authorization: string | undefined): Promise<VerifiedApiKey> {
    // The scheme is case-insensitive (RFC 9110 §11.1).
    const m = /^Bearer ([!-~]{1,200})$/i.exec(authorization ?? '')
    // An unknown key id costs the lookup and HMAC a known one does (verifyApiKey compares with a
    // dummy hash), so timing tells no one which ids exist; a malformed key is refused at once.
    let key: VerifiedApiKey | null
    try {
      key = await verifyApiKey(this.deps.sql, m?.[1] ?? '')
    } catch (err) {
      this.deps.logger.error({ err }, 'send API key not checked')
      throw new ApiError('SERVICE_UNAVAILABLE', 'the key could not be checked; try again', {
        headers: { 'Retry-After': '5' },
      })
    }
    if (!key || !m) {
      throw new ApiError('AUTH_FAILED', 'a valid API key is required: Authorization: Bearer atmos_…', {
        headers: { 'WWW-Authenticate': 'Bearer realm="atmos-send"' },
      })
    }
    if (key.memberStatus !== 'active' || key.domainStatus !== 'active') {
      const who = key.memberStatus !== 'active' ? key.did : key.domain
      const status = key.memberStatus !== 'active' ? key.memberStatus : key.domainStatus
      throw new ApiError(
        'MEMBER_SUSPENDED',
        status === 'suspended' ? `${who} is suspended from the relay` : `${who} is not active in the relay yet`,
      )
    }
    return key
  }

  private async send(input: SendInput): Promise<Answer> {
    const { deps } = this
    const key = await this.authenticate(input.authorization)
    const rate = await deps.rateLimit.take(key.keyId)
    if (!rate.allowed) {
      throw new ApiError('RATE_LIMITED', `at most ${deps.api.rateLimit} requests a key in each window`, {
        headers: { 'Retry-After': String(rate.retryAfterSeconds) },
      })
    }
    const idemKey = input.idempotencyKey
    if (idemKey !== undefined && !validIdempotencyKey(idemKey)) {
      throw new ApiError('INVALID_REQUEST', 'Idempotency-Key must be 1 to 255 printable ASCII characters', {
        field: 'Idempotency-Key',
      })
    }
    if (!/^application\/json\s*(?:;|$)/i.test(input.contentType ?? '')) {
      throw new ApiError('INVALID_REQUEST', 'the body must be JSON (Content-Type: application/json)', {
        field: 'Content-Type',
      })
    }
    const raw = await input.body()
    const requestHash = createHash('sha256').update(raw).digest('base64url')
    // The answers are kept by the key's row id (they go when the key's row goes).
    const apiKeyId = idemKey === undefined ? 0 : await this.apiKeyRow(key.keyId)
    if (idemKey !== undefined) {
      const stored = await findAnswer(deps.sql, apiKeyId, idemKey, deps.api.idempotencyTtl)
      if (stored) return this.replay(stored, requestHash)
    }

    let json: unknown
    try {
      json = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'))
    } catch {
      throw new ApiError('INVALID_REQUEST', 'the body is not valid JSON')
    }
    const parsed = this.schema.safeParse(json)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!
      const path =
        issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0] ?? ''] : (issue.path as PropertyKey[])
      const field = fieldName(path)
      const message =
        issue.code === 'unrecognized_keys'
          ? `unknown field ${field}`
          : issue.code === 'invalid_key'
            ? `${field}: this header may not be set through headers`
            : `${field || 'body'}: ${issue.message}`
      throw new ApiError('INVALID_REQUEST', message, field ? { field } : {})
    }
    const req = parsed.data
    return this.deliver(req, key, input.remoteAddress, async (answer, spool) => {
      if (idemKey === undefined) {
        await spool()
        return answer
      }
      return this.withIdempotency(apiKeyId, idemKey, requestHash, answer, spool)
    })
  }

  private async apiKeyRow(keyId: string): Promise<number> {
    const [row] = await this.deps.sql<{ id: number }[]>`select id::int as id from api_keys where key_id = ${keyId}`
    if (!row) throw new ApiError('AUTH_FAILED', 'a valid API key is required: Authorization: Bearer atmos_…')
    return row.id
  }

  private replay(stored: { requestHash: string; status: number; response: unknown }, requestHash: string): Answer {
    if (stored.requestHash !== requestHash) {
      throw new ApiError(
        'IDEMPOTENCY_KEY_REUSED',
        'this Idempotency-Key was used with a different request body; use a new key for a new message',
        { field: 'Idempotency-Key' },
      )
    }
    return {
      status: stored.status,
      body: stored.response as SendResponse,
      headers: { 'Idempotent-Replayed': 'true' },
    }
  }

  /**
   * The idempotent path: the answer is recorded in the spool's transaction; when another
   * request with the key got there first, its answer is the answer.
   */
  private async withIdempotency(
    apiKeyId: number,
    idemKey: string,
    requestHash: string,
    answer: Answer,
    spool: (tx?: Pool) => Promise<void>,
  ): Promise<Answer> {
    const { deps } = this
    try {
      await recordAnswer(
        deps.sql,
        { apiKeyId, key: idemKey, requestHash, ttlMs: deps.api.idempotencyTtl },
        { status: answer.status, response: answer.body },
        spool,
      )
      return answer
    } catch (err) {
      if (!(err instanceof AlreadyAnswered)) throw err
      const stored = await findAnswer(deps.sql, apiKeyId, idemKey, deps.api.idempotencyTtl)
      if (!stored) throw new ApiError('INTERNAL', 'the request failed on our side; try again')
      return this.replay(stored, requestHash)
    }
  }

  /**
   * The submission policy over a validated request: admission of `from` (at the key's domain),
   * recipients screened, the message composed, signed per recipient, spooled and enqueued.
   * `run` spools, in an idempotency transaction or not.
   */
  private async deliver(
    req: SendRequest,
    key: VerifiedApiKey,
    remoteAddress: string,
    run: (answer: Answer, spool: (tx?: Pool) => Promise<void>) => Promise<Answer>,
  ): Promise<Answer> {
    const { deps } = this
    const { policy } = deps
    const fromAddress = typeof req.from === 'string' ? req.from : req.from.address
    const fromChecked = checkRecipient(fromAddress)
    if (!fromChecked.ok || fromAddress.endsWith('.')) {
      throw new ApiError('INVALID_REQUEST', `from: <${fromAddress}> is not a plain address`, { field: 'from' })
    }
    if (!isSameOrSubdomain(addressDomain(fromAddress), key.domain)) {
      throw new ApiError('DOMAIN_MISMATCH', `from must be an address at ${key.domain}: this API key sends only as it`, {
        field: 'from',
      })
    }
    const headerCategory = Object.entries(req.headers ?? {}).find(([k]) => k.toLowerCase() === 'x-atmos-category')?.[1]
    if (req.category && headerCategory !== undefined && headerCategory.trim().toLowerCase() !== req.category) {
      throw new ApiError('INVALID_REQUEST', 'category and headers.X-Atmos-Category disagree', { field: 'category' })
    }
    const sender: Sender = { memberId: key.memberId, did: key.did, scopeDomainId: key.domainId }
    const tx = await policy.admit(sender, fromAddress, false)

    const list = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v])
    const to = list(req.to)
    const cc = list(req.cc)
    if (to.length + cc.length > deps.maxRecipients) {
      throw new ApiError('INVALID_REQUEST', `at most ${deps.maxRecipients} recipients (to and cc together)`, {
        field: 'to',
      })
    }
    const screened = await policy.screenRecipients(sender, tx, [...to, ...cc])
    const rejected = screened.rejected.map((r) => ({ recipient: r.address, reason: replyText(r.reply) }))
    if (!screened.accepted.length) return run({ status: 200, body: { accepted: [], rejected } }, async () => {})

    // The header lists what the member wrote, less what is not an address at all.
    const valid = (a: string) => checkRecipient(a).ok
    let message: Buffer
    try {
      message = await composeMessage(
        req,
        { to: to.filter(valid), cc: cc.filter(valid) },
        req.category ?? headerCategory,
      )
    } catch (err) {
      throw new ApiError('INVALID_REQUEST', `the message could not be built: ${(err as Error).message}`)
    }
    if (message.length > deps.maxSize) {
      throw new ApiError('PAYLOAD_TOO_LARGE', `the message would exceed ${deps.maxSize} bytes`)
    }
    // The same line rules SMTP applies while DATA streams (lines.ts).
    const lines = new LineCheck()
    lines.push(message)
    lines.end()
    if (lines.problem) throw new ApiError('INVALID_REQUEST', lines.problem)

    const signed = await policy.sign({
      sender,
      tx,
      envelopeFrom: fromAddress,
      message,
      recipients: screened.accepted.map((r) => r.address),
      arrival: { protocol: 'HTTP', client: { helo: '', address: remoteAddress } },
    })
    const body: SendResponse = {
      accepted: signed.request.copies.map((c) => ({ recipient: c.recipient, messageId: c.id })),
      rejected,
    }
    let ids: string[] = []
    const answer = await run({ status: 200, body }, async (sql) => {
      ids = await policy.commit(sender, tx, signed, sql ? (r) => spoolMessage(sql, r) : undefined, { enqueue: false })
    })
    // Enqueued once the spool has committed (a job must find its message); a replayed answer
    // spooled nothing here, so ids stay empty.
    if (ids.length) await policy.enqueue(ids)
    return answer
  }
}
