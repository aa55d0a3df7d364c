import { z } from 'zod'

// The send API's request and answers as zod schemas: the handler validates with them and the
// OpenAPI document (openapi.ts) is generated from them, so the two cannot drift apart.
// Every pattern here is a single pass (no nested quantifiers): they run on hostile input.

/**
 * Header fields a member may not set through `headers`: the ones the request has its own
 * fields for (From, To, Cc, Subject, Reply-To), the ones MailComposer or the relay write
 * (Message-ID, Date, MIME and content fields, Return-Path, Received, signatures, verdicts, our
 * X-Atmos-* but the category) and the ones that must not travel (Bcc, Resent-*). SMTP removes
 * most of these silently; the API refuses them, naming the field, since a JSON caller can
 * always choose not to send them.
 */
const REFUSED_HEADERS = [
  'from',
  'sender',
  'to',
  'cc',
  'bcc',
  'subject',
  'reply-to',
  'message-id',
  'date',
  'return-path',
  'received',
  'received-spf',
  'authentication-results',
  'feedback-id',
  'mime-version',
]
const REFUSED_PREFIXES = ['dkim-', 'arc-', 'resent-', 'content-', 'x-atmos-(?!category$)']

/** `from` as a case-insensitive pattern JSON Schema can carry (its patterns have no flags). */
function anyCase(text: string): string {
  return text.replace(/[a-z]/g, (ch) => `[${ch}${ch.toUpperCase()}]`)
}

/**
 * The pattern HEADER_NAME spells out: printable ASCII but the colon, 1–76 characters, none of
 * the refused names or prefixes, in any case.
 */
export function headerNamePattern(): string {
  return `^(?!(?:${REFUSED_HEADERS.map(anyCase).join('|')})$)(?!(?:${REFUSED_PREFIXES.map(anyCase).join('|')}))[!-9;-~]{1,76}$`
}

/**
 * A header name a request may set. Written out rather than built at run time, so that the
 * ReDoS check (packages/mail-feedback/test/redos.test.ts) reads it; a relay test holds it
 * equal to headerNamePattern(), so the lists above stay the one source.
 */
export const HEADER_NAME =
  /^(?!(?:[fF][rR][oO][mM]|[sS][eE][nN][dD][eE][rR]|[tT][oO]|[cC][cC]|[bB][cC][cC]|[sS][uU][bB][jJ][eE][cC][tT]|[rR][eE][pP][lL][yY]-[tT][oO]|[mM][eE][sS][sS][aA][gG][eE]-[iI][dD]|[dD][aA][tT][eE]|[rR][eE][tT][uU][rR][nN]-[pP][aA][tT][hH]|[rR][eE][cC][eE][iI][vV][eE][dD]|[rR][eE][cC][eE][iI][vV][eE][dD]-[sS][pP][fF]|[aA][uU][tT][hH][eE][nN][tT][iI][cC][aA][tT][iI][oO][nN]-[rR][eE][sS][uU][lL][tT][sS]|[fF][eE][eE][dD][bB][aA][cC][kK]-[iI][dD]|[mM][iI][mM][eE]-[vV][eE][rR][sS][iI][oO][nN])$)(?!(?:[dD][kK][iI][mM]-|[aA][rR][cC]-|[rR][eE][sS][eE][nN][tT]-|[cC][oO][nN][tT][eE][nN][tT]-|[xX]-[aA][tT][mM][oO][sS]-(?![cC][aA][tT][eE][gG][oO][rR][yY]$)))[!-9;-~]{1,76}$/

/** No control characters but tab: a CR or LF would start a header line the relay never checked. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
const NO_CONTROLS = /^[^\x00-\x08\x0a-\x1f\x7f]*$/
const text = (max: number) => z.string().max(max).regex(NO_CONTROLS, 'must not hold control characters')

/** An address as given; its syntax is the submission policy's check (a bad recipient is rejected, not refused). */
const address = z.string().min(1).max(320)

/** Header fields a request may add: enough for any real use, few enough to bound the work on each. */
const MAX_HEADERS = 50

export type SendLimits = {
  /** Envelope recipients a message may have (to and cc together): relay.submission.maxRecipients. */
  maxRecipients: number
  maxAttachments: number
  /** The request body limit: no string can be longer. */
  bodyLimit: number
}

export function sendRequestSchema(limits: SendLimits) {
  const recipients = z.union([address, z.array(address).min(1).max(limits.maxRecipients)])
  return z
    .strictObject({
      from: z.union([address, z.strictObject({ name: text(200), address })]),
      to: recipients,
      cc: recipients.optional(),
      subject: text(998),
      text: z.string().max(limits.bodyLimit).optional(),
      html: z.string().max(limits.bodyLimit).optional(),
      replyTo: z.union([address, z.array(address).min(1).max(10)]).optional(),
      headers: z
        .record(z.string().regex(HEADER_NAME, 'this header may not be set (see the API documentation)'), text(998))
        .refine((h) => Object.keys(h).length <= MAX_HEADERS, `at most ${MAX_HEADERS} headers`)
        // The refinement, as JSON Schema says it (the OpenAPI document is generated from this).
        .meta({ maxProperties: MAX_HEADERS })
        .optional(),
      /** X-Atmos-Category: decides whether List-Unsubscribe is added (see the README). */
      category: z
        .string()
        .regex(/^[a-z0-9-]{1,40}$/, 'must be 1 to 40 lower-case letters, digits or dashes')
        .optional(),
      attachments: z
        .array(
          z.strictObject({
            filename: z.string().min(1).max(255).regex(NO_CONTROLS, 'must not hold control characters'),
            content: z.base64().max(limits.bodyLimit),
            contentType: z
              .string()
              .regex(/^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/)
              .optional(),
          }),
        )
        .max(limits.maxAttachments)
        .optional(),
    })
    .refine((r) => r.text !== undefined || r.html !== undefined, {
      path: ['text'],
      message: 'a message needs text or html',
    })
}

export type SendRequest = z.output<ReturnType<typeof sendRequestSchema>>

export const sendResponseSchema = z.strictObject({
  accepted: z.array(
    z.strictObject({
      recipient: z.string(),
      /** The relay's id of this recipient's copy (the "queued as" of SMTP). */
      messageId: z.uuid(),
    }),
  ),
  rejected: z.array(z.strictObject({ recipient: z.string(), reason: z.string() })),
})

export type SendResponse = z.output<typeof sendResponseSchema>

/** Every error the API answers, with its HTTP status. */
export const ERRORS = {
  INVALID_REQUEST: 400,
  AUTH_FAILED: 401,
  MEMBER_SUSPENDED: 403,
  DOMAIN_NOT_VERIFIED: 403,
  DOMAIN_MISMATCH: 403,
  NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  IDEMPOTENCY_KEY_REUSED: 422,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  SERVICE_UNAVAILABLE: 503,
} as const

export type ErrorCode = keyof typeof ERRORS

export const errorSchema = z.strictObject({
  error: z.strictObject({
    code: z.enum(Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    /** The request field at fault (`to[1]`, `headers.DKIM-Signature`, `Idempotency-Key`). */
    field: z.string().optional(),
  }),
})

export type ErrorBody = z.output<typeof errorSchema>

/** `to[1]`, `headers.X-Foo`, `attachments[0].content` from a zod path. */
export function fieldName(path: readonly PropertyKey[]): string {
  let out = ''
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`
  return out
}
