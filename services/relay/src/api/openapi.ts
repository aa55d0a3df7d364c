import { z } from 'zod'
import { ERRORS, errorSchema, type SendLimits, sendRequestSchema, sendResponseSchema } from './schema.ts'

const json = (schema: z.ZodType, io: 'input' | 'output') => {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>
  return rest
}

const errorRef = { $ref: '#/components/schemas/Error' }
const retryAfter = {
  'Retry-After': { description: 'Seconds until a retry may succeed', schema: { type: 'integer', minimum: 1 } },
}

/** Which error codes each status carries (from ERRORS), for the document's descriptions. */
function codesFor(status: number): string {
  return Object.entries(ERRORS)
    .filter(([, s]) => s === status)
    .map(([code]) => `\`${code}\``)
    .join(', ')
}

function errorResponse(status: number, what: string, headers?: Record<string, unknown>) {
  return {
    description: `${what} (${codesFor(status)})`,
    ...(headers ? { headers } : {}),
    content: { 'application/json': { schema: errorRef } },
  }
}

/**
 * The OpenAPI 3.1 document of the send API, generated from the zod schemas the handler
 * validates with (JSON Schema 2020-12, which OpenAPI 3.1 uses as is) and the configured limits.
 */
export function openApiDocument(limits: SendLimits & { serverUrl?: string }) {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Atmosphere Mail send API',
      version: '1.0.0',
      description:
        'Send mail through the Atmosphere Mail relay over HTTPS: the same policy, signing and spool as SMTP submission.',
    },
    ...(limits.serverUrl ? { servers: [{ url: limits.serverUrl }] } : {}),
    paths: {
      '/v1/send': {
        post: {
          operationId: 'send',
          summary: 'Send one message to its recipients',
          security: [{ apiKey: [] }],
          parameters: [
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              description:
                'A retry with the same key and body within 24 h returns the first answer and sends nothing again; the same key with another body is refused (422).',
              schema: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[\\x20-\\x7e]+$' },
            },
          ],
          requestBody: {
            required: true,
            description: `JSON, at most ${limits.bodyLimit} bytes`,
            content: { 'application/json': { schema: { $ref: '#/components/schemas/SendRequest' } } },
          },
          responses: {
            '200': {
              description:
                'Spooled for every accepted recipient (suppressed or malformed recipients are listed as rejected)',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/SendResponse' } } },
            },
            '400': errorResponse(400, 'The request is malformed; `field` names what'),
            '401': errorResponse(401, 'Missing, unknown or revoked API key', {
              'WWW-Authenticate': { schema: { type: 'string' } },
            }),
            '403': errorResponse(403, 'The key may not send this'),
            '413': errorResponse(413, 'The body or the message is too large'),
            '422': errorResponse(422, 'The Idempotency-Key was used with another body'),
            '429': errorResponse(429, "Too many requests, or the domain's daily cap is reached", retryAfter),
            '500': errorResponse(500, 'Our fault'),
            '503': errorResponse(503, 'Temporarily unable to sign or check keys', retryAfter),
          },
        },
      },
      '/v1/openapi.json': {
        get: {
          operationId: 'openapi',
          summary: 'This document',
          responses: { '200': { description: 'The OpenAPI document', content: { 'application/json': {} } } },
        },
      },
    },
    components: {
      securitySchemes: {
        apiKey: {
          type: 'http',
          scheme: 'bearer',
          description: 'The API key issued in the account: atmos_<id>_<secret>',
        },
      },
      schemas: {
        // The refinement "text or html" is code in zod; JSON Schema says it with anyOf.
        SendRequest: {
          ...json(sendRequestSchema(limits), 'input'),
          anyOf: [{ required: ['text'] }, { required: ['html'] }],
        },
        SendResponse: json(sendResponseSchema, 'output'),
        Error: json(errorSchema, 'output'),
      },
    },
  }
}
