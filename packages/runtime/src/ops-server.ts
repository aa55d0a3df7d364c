import type { AddressInfo } from 'node:net'
import { type ServerType, serve } from '@hono/node-server'
import { Hono } from 'hono'
import { Gauge, type Registry } from 'prom-client'
import { CHECK_TIMEOUT_MS, type DependencyCheck, withTimeout } from './connections.ts'
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
 * readiness and Prometheus metrics. Orchestrators route traffic and restart pods by it.
 *
 * Readiness means "can do the work this process is sent": it fails (503) while a required
 * check fails or the service drains. A check the process's work does not need (Redis for a
 * process that spools to Postgres) still runs and is named in the body, which then says
 * "degraded", and in atmos_readiness_check, but the answer stays 200. Each check is cut
 * off after CHECK_TIMEOUT_MS, so /readyz answers within it even when a peer hangs.
 */
export class OpsServer {
  readonly app = new Hono()
  private server: ServerType | undefined
  private draining = false
  private readonly opts: OpsServerOptions
  private readonly gauge: Gauge

  constructor(opts: OpsServerOptions) {
    this.opts = opts
    const self = this
    this.gauge = new Gauge({
      name: 'atmos_readiness_check',
      help: 'Whether each readiness check passes (1) or fails (0), and whether readiness requires it',
      labelNames: ['check', 'required'],
      registers: [opts.metrics],
      async collect() {
        await self.evaluate()
      },
    })
    this.app.get('/healthz', (c) => c.json({ status: 'ok' }))
    this.app.get('/readyz', async (c) => {
      if (this.draining) return c.json({ status: 'draining' }, 503)
      const { ready, degraded, checks } = await this.evaluate()
      const status = !ready ? 'unavailable' : degraded ? 'degraded' : 'ready'
      return c.json({ status, checks }, ready ? 200 : 503)
    })
    this.app.get('/metrics', async (c) => {
      c.header('content-type', opts.metrics.contentType)
      return c.body(await opts.metrics.metrics())
    })
  }

  /** Runs every check at once, each bounded by CHECK_TIMEOUT_MS, and records them in the gauge. */
  private async evaluate(): Promise<{ ready: boolean; degraded: boolean; checks: Record<string, string> }> {
    const results = await Promise.all(
      this.opts.checks.map(async ({ name, check, required = true }) => {
        let result = 'ok'
        try {
          await withTimeout(check(), CHECK_TIMEOUT_MS, name)
        } catch (err) {
          result = (err as Error).message
        }
        this.gauge.set({ check: name, required: String(required) }, result === 'ok' ? 1 : 0)
        return { name, required, result }
      }),
    )
    return {
      ready: results.every((r) => r.result === 'ok' || !r.required),
      degraded: results.some((r) => r.result !== 'ok' && !r.required),
      checks: Object.fromEntries(results.map((r) => [r.name, r.result])),
    }
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
