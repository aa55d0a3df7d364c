import type { AddressInfo } from 'node:net'
import { type ServerType, serve } from '@hono/node-server'
import { Hono } from 'hono'
import type { Registry } from 'prom-client'
import type { DependencyCheck } from './connections.ts'
import type { Logger } from './logger.ts'

export type OpsServerOptions = {
  host: string
  port: number
  logger: Logger
  metrics: Registry
  checks: DependencyCheck[]
}

/**
 * The operational HTTP endpoint every service has: liveness (the process answers),
 * readiness (Postgres and Redis answer, and the service is not draining) and Prometheus
 * metrics. Orchestrators route traffic and restart pods by it.
 */
export class OpsServer {
  readonly app = new Hono()
  private server: ServerType | undefined
  private draining = false
  private readonly opts: OpsServerOptions

  constructor(opts: OpsServerOptions) {
    this.opts = opts
    this.app.get('/healthz', (c) => c.json({ status: 'ok' }))
    this.app.get('/readyz', async (c) => {
      if (this.draining) return c.json({ status: 'draining' }, 503)
      const results = await Promise.all(
        opts.checks.map(async ({ name, check }) => {
          try {
            await check()
            return [name, 'ok'] as const
          } catch (err) {
            return [name, (err as Error).message] as const
          }
        }),
      )
      const ready = results.every(([, r]) => r === 'ok')
      return c.json({ status: ready ? 'ready' : 'unavailable', checks: Object.fromEntries(results) }, ready ? 200 : 503)
    })
    this.app.get('/metrics', async (c) => {
      c.header('content-type', opts.metrics.contentType)
      return c.body(await opts.metrics.metrics())
    })
  }

  async start(): Promise<AddressInfo> {
    const server = serve({ fetch: this.app.fetch, hostname: this.opts.host, port: this.opts.port })
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve)
      server.once('error', reject)
    })
    const address = server.address() as AddressInfo
    this.opts.logger.info({ http: `http://${address.address}:${address.port}` }, 'ops endpoint listening')
    return address
  }

  get address(): AddressInfo | undefined {
    return (this.server?.address() as AddressInfo | null) ?? undefined
  }

  /** Adds a readiness condition (a service's own start-up, a listener it depends on). */
  addCheck(check: DependencyCheck): void {
    this.opts.checks.push(check)
  }

  /** From now on /readyz answers 503, so that load balancers stop sending work. */
  startDraining(): void {
    this.draining = true
  }

  async stop(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = undefined
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      // Probes keep connections alive; do not let them hold the shutdown.
      ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
    })
  }
}
