import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Db } from '@atmos/db'
import type { Logger } from '@atmos/runtime'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { memberRoutes } from './member/routes.ts'
import { operatorRoutes } from './operator/routes.ts'

/** The admin's web endpoint: the operator and member APIs now; the dashboard and wizard join them. */
export function createWebApp(opts: { db: Db; logger: Logger; operatorToken: string | undefined }): Hono {
  const app = new Hono()
  app.route('/api/member', memberRoutes(opts.db))
  if (opts.operatorToken) app.route('/api/operator', operatorRoutes(opts.db, opts.operatorToken))
  else {
    app.all('/api/operator/*', (c) =>
      c.json({ error: 'NotConfigured', message: 'operator access is off: set admin.operatorTokenFile' }, 404),
    )
  }
  app.notFound((c) => c.json({ error: 'NotFound', message: `${c.req.method} ${c.req.path}` }, 404))
  app.onError((err, c) => {
    opts.logger.error({ err: err.message, path: c.req.path }, 'admin request failed')
    return c.json({ error: 'InternalServerError', message: 'the request failed; see the admin log' }, 500)
  })
  return app
}

export async function listenWeb(app: Hono, host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(server as Server)) as Server
    server.once('error', reject)
  })
}

export function webAddress(server: Server | undefined): string | undefined {
  const a = server?.address() as AddressInfo | null | undefined
  return a ? `http://${a.address}:${a.port}` : undefined
}
