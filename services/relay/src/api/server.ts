import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Pool } from '@atmos/db'
import type { Logger } from '@atmos/runtime'
import { serve } from '@hono/node-server'
import { getConnInfo } from '@hono/node-server/conninfo'
import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import type { LabelledCounter } from '../submission/metrics.ts'
import type { ApiConfig } from './config.ts'
import { sweepAnswers } from './idempotency.ts'
import { openApiDocument } from './openapi.ts'
import type { ErrorCode } from './schema.ts'
import { ApiError, type SendHandler } from './send.ts'

const errorAnswer = (code: ErrorCode, message: string) => new ApiError(code, message).answer()

/** The send API's routes: POST /v1/send and GET /v1/openapi.json. */
export function sendApiApp(opts: {
  config: ApiConfig
  handler: SendHandler
  logger: Logger
  document: unknown
  answers: LabelledCounter<'code'>
}): Hono {
  const app = new Hono()
  const { config, handler, logger, answers } = opts
  app.get('/v1/openapi.json', (c) => c.json(opts.document as object))
  app.post(
    '/v1/send',
    // A declared Content-Length over the limit is refused before a byte is read; a chunked
    // body is counted as it streams and cut off at the limit.
    bodyLimit({
      maxSize: config.bodyLimit,
      onError: (c) => {
        const a = errorAnswer('PAYLOAD_TOO_LARGE', `the body exceeds ${config.bodyLimit} bytes`)
        answers.inc({ code: 'PAYLOAD_TOO_LARGE' })
        return c.json(a.body, a.status as 413, { Connection: 'close' })
      },
    }),
    async (c) => {
      const answer = await handler.handle({
        authorization: c.req.header('authorization'),
        contentType: c.req.header('content-type'),
        idempotencyKey: c.req.header('idempotency-key'),
        remoteAddress: getConnInfo(c).remote.address ?? '',
        body: async () => new Uint8Array(await c.req.arrayBuffer()),
      })
      answers.inc({ code: 'error' in answer.body ? answer.body.error.code : 'OK' })
      return c.json(answer.body, answer.status as 200, answer.headers ?? {})
    },
  )
  app.notFound((c) => {
    const a = errorAnswer('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`)
    answers.inc({ code: 'NOT_FOUND' })
    return c.json(a.body, 404)
  })
  app.onError((err, c) => {
    logger.error({ err, path: c.req.path }, 'send API request failed')
    const a = errorAnswer('INTERNAL', 'the request failed on our side; try again')
    answers.inc({ code: 'INTERNAL' })
    return c.json(a.body, 500)
  })
  return app
}

/** The send API's HTTP listener, and the sweep of expired idempotency answers. */
export class SendApiServer {
  private server: Server | undefined
  private sweep: NodeJS.Timeout | undefined
  address: { host: string; port: number } | undefined

  async start(opts: {
    config: ApiConfig
    handler: SendHandler
    logger: Logger
    sql: Pool
    maxRecipients: number
    answers: LabelledCounter<'code'>
  }): Promise<void> {
    const { config, logger } = opts
    const document = openApiDocument({
      maxRecipients: opts.maxRecipients,
      maxAttachments: config.maxAttachments,
      bodyLimit: config.bodyLimit,
    })
    const app = sendApiApp({ config, handler: opts.handler, logger, document, answers: opts.answers })
    this.server = await new Promise<Server>((resolve, reject) => {
      const server = serve(
        {
          fetch: app.fetch,
          hostname: config.host,
          port: config.port,
          // The whole request within requestTimeout, its headers within 10 s: a trickling
          // client holds a socket for a bounded time.
          serverOptions: {
            requestTimeout: config.requestTimeout,
            headersTimeout: Math.min(10_000, config.requestTimeout),
          },
        },
        () => resolve(server as Server),
      ) as Server
      server.once('error', reject)
    })
    const a = this.server.address() as AddressInfo
    this.address = { host: config.host, port: a.port }
    this.sweep = setInterval(
      () => {
        sweepAnswers(opts.sql, config.idempotencyTtl).catch((err: Error) =>
          logger.warn({ err: err.message }, 'idempotency sweep failed'),
        )
      },
      Math.min(config.idempotencyTtl, 3600_000),
    ).unref()
    logger.info({ api: `http://${this.address.host}:${this.address.port}` }, 'send API listening')
  }

  async stop(): Promise<void> {
    if (this.sweep) clearInterval(this.sweep)
    const server = this.server
    this.server = undefined
    if (!server) return
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      // Keep-alive connections idle between requests would hold close() open.
      server.closeIdleConnections()
    })
  }
}
