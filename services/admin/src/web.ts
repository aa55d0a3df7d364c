import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Db } from '@atmos/db'
import type { memberStatusChanged, TypedQueue } from '@atmos/queues'
import type { Logger } from '@atmos/runtime'
import type { NodeOAuthClient } from '@atproto/oauth-client-node'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import type { AdminConfig } from './config.ts'
import type { QueueReader } from './console/pool.ts'
import { consolePages } from './console/routes.ts'
import { labelReader } from './labels/query.ts'
import { memberRoutes } from './member/routes.ts'
import { isLoopbackUrl } from './oauth/client.ts'
import { oauthMetadataRoutes } from './oauth/routes.ts'
import { operatorRoutes } from './operator/routes.ts'
import { accountPages } from './web/account.ts'
import { csrfMiddleware } from './web/csrf.ts'
import { mountEnroll } from './web/enroll.ts'
import { mountKeys } from './web/keys.ts'
import { errorPage } from './web/layout.ts'
import { WindowLimiter } from './web/rate-limit.ts'
import { securityHeaders } from './web/security-headers.ts'
import { type SessionOptions, type SessionVars, sessionMiddleware } from './web/session.ts'
import { signinRoutes } from './web/signin.ts'
import { unsubscribeRoutes } from './web/unsubscribe.ts'
import { mountWebhooks } from './web/webhooks.ts'

/** What /static serves: read once at start, a fixed list (no path from the request touches the disk). */
const STATIC: Record<string, string> = { 'admin.css': 'text/css', 'admin.js': 'text/javascript' }

export type WebAppOptions = {
  db: Db
  logger: Logger
  operatorToken: string | undefined
  config: AdminConfig['admin']
  publicUrl: URL
  /** Undefined when sign-in is off (no key-encryption key file yet): the pages say so. */
  oauth: NodeOAuthClient | undefined
  /** The pool's token secret, for /u/ (one-click unsubscribe); undefined: those pages answer 503. */
  tokenSecret?: string | undefined
  /** member-status-changed, for the wizard's activations; absent in tests that do not need it. */
  statusQueue?: TypedQueue<typeof memberStatusChanged> | undefined
  /** The queues' depths for the operator console; absent in tests that do not need them. */
  queues?: QueueReader | undefined
}

/** The admin's web endpoint: the sign-in and account pages, the operator and member APIs. */
export function createWebApp(opts: WebAppOptions): Hono<{ Variables: SessionVars }> {
  const { db, config, publicUrl, oauth } = opts
  const app = new Hono<{ Variables: SessionVars }>()
  const operators = new Set(config.operators)
  const sessions: SessionOptions = {
    ttlMs: config.session.ttl,
    // Browsers keep Secure cookies from http://127.0.0.1 only in some versions; loopback http is development.
    secure: !(publicUrl.protocol === 'http:' && isLoopbackUrl(publicUrl)),
    operators,
  }
  app.use('*', securityHeaders())
  app.use('*', sessionMiddleware(db, sessions))
  app.use('*', csrfMiddleware(publicUrl.origin))

  const files = new Map(
    Object.entries(STATIC).map(([name, type]) => [
      name,
      { type, body: readFileSync(new URL(`../static/${name}`, import.meta.url)) },
    ]),
  )
  app.get('/static/:name', (c) => {
    const f = files.get(c.req.param('name'))
    if (!f) return c.text('not found', 404)
    return c.body(new Uint8Array(f.body), 200, {
      'Content-Type': `${f.type}; charset=utf-8`,
      'Cache-Control': 'public, max-age=300',
    })
  })

  if (oauth) {
    if (!isLoopbackUrl(publicUrl)) app.route('/oauth', oauthMetadataRoutes(oauth))
    app.route(
      '/',
      signinRoutes({
        db,
        logger: opts.logger,
        oauth,
        sessions,
        limiter: new WindowLimiter(config.signinPerMinute, 60_000),
      }),
    )
    // One reader of our labeler's queryLabels for the account pages and the wizard's last step.
    const labels = labelReader({ baseUrl: config.labeler.url, labelerDid: config.labeler.did || undefined })
    app.route(
      '/',
      accountPages({
        db,
        logger: opts.logger,
        oauth,
        config,
        labels,
        statusQueue: opts.statusQueue,
      }),
    )
    app.route(
      '/',
      consolePages({ db, logger: opts.logger, config, statusQueue: opts.statusQueue, queues: opts.queues }),
    )
    mountEnroll(app, {
      db,
      logger: opts.logger,
      oauth,
      config: config.enroll,
      maxDomains: config.maxDomainsPerMember,
      statusQueue: opts.statusQueue,
      readLabels: labels,
    })
    mountKeys(app, { db, logger: opts.logger, oauth, config: config.enroll })
    mountWebhooks(app, { db, logger: opts.logger, config: config.webhooks })
  } else {
    // The reason (a file path) is in the admin's log, not on a public page.
    app.get('/', () =>
      errorPage(
        503,
        'Sign-in is not available',
        'The operator has not finished setting up sign-in yet. Try again later.',
      ),
    )
  }

  app.route(
    '/u',
    unsubscribeRoutes({ db, logger: opts.logger, key: opts.tokenSecret ? { secret: opts.tokenSecret } : undefined }),
  )
  app.route('/api/member', memberRoutes(db))
  if (opts.operatorToken || operators.size) app.route('/api/operator', operatorRoutes(db, opts.operatorToken))
  else {
    app.all('/api/operator/*', (c) =>
      c.json({ error: 'NotConfigured', message: 'operator access is off: set admin.operatorTokenFile' }, 404),
    )
  }
  app.notFound((c) => {
    if (c.req.path.startsWith('/api/'))
      return c.json({ error: 'NotFound', message: `${c.req.method} ${c.req.path}` }, 404)
    return errorPage(404, 'Page not found', 'There is no page at this address.', null)
  })
  app.onError((err, c) => {
    opts.logger.error({ err: err.message, path: c.req.path }, 'admin request failed')
    if (c.req.path.startsWith('/api/')) {
      return c.json({ error: 'InternalServerError', message: 'the request failed; see the admin log' }, 500)
    }
    return errorPage(
      500,
      'Something went wrong',
      'The request failed on our side; try again. The operator can see the details in the admin log.',
      null,
    )
  })
  return app
}

export async function listenWeb(
  fetch: (req: Request, env: unknown) => Response | Promise<Response>,
  host: string,
  port: number,
): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, hostname: host, port }, () => resolve(server as Server)) as Server
    server.once('error', reject)
  })
}

export function webAddress(server: Server | undefined): string | undefined {
  const a = server?.address() as AddressInfo | null | undefined
  return a ? `http://${a.address}:${a.port}` : undefined
}
