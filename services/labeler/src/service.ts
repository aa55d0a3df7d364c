import type { Server as HttpServer } from 'node:http'
import { BaseService } from '@atmos/runtime'
import type { Server as XrpcServer } from '@atproto/xrpc-server'
import { QueryCache } from './api/query-cache.ts'
import { registerQueryLabels } from './api/query-labels.ts'
import { createXrpcServer, listen } from './api/server.ts'
import { SubscribeLabelsServer } from './api/subscribe-labels.ts'
import type { LabelerConfig } from './config.ts'
import { type AppContext, type ContextOptions, createContext } from './context.ts'

/** Watches the network for email.atmos.attestation records, verifies them and serves signed labels. */
export class LabelerService extends BaseService<AppContext> {
  private xrpc: XrpcServer | undefined
  private subscriptions: SubscribeLabelsServer | undefined
  private http: HttpServer | undefined
  private resign: { abort: AbortController; done: Promise<void> } | undefined

  static async create(config: LabelerConfig, opts: ContextOptions = {}): Promise<LabelerService> {
    return new LabelerService(await createContext(config, opts))
  }

  /** The XRPC endpoint's base URL once started. */
  get xrpcUrl(): string | undefined {
    const a = this.http?.address()
    return a && typeof a === 'object' ? `http://${a.address}:${a.port}` : undefined
  }

  protected override async startWork(): Promise<void> {
    const { config, labelStream, labelerMetrics: m } = this.ctx
    await labelStream.start()
    const xrpc = createXrpcServer()
    const cache = new QueryCache(config.labeler.queryCacheBytes)
    // A new label row stands for its (src, uri, val): the row it replaced had the same
    // subject and source, so the new rows alone say which pages changed.
    labelStream.onChange((changed) => (changed === 'all' ? cache.invalidateAll() : cache.invalidate(changed)))
    registerQueryLabels(xrpc, this.ctx.db, cache, (s) => m.queryLabelsSeconds.observe(s), this.ctx.afterPageQuery)
    const subscriptions = new SubscribeLabelsServer(
      labelStream,
      {
        connected: () => m.subscribers.inc(),
        closed: (reason) => {
          m.subscribers.dec()
          m.subscribersClosed.inc({ reason })
        },
      },
      this.logger,
    )
    this.xrpc = xrpc
    this.subscriptions = subscriptions
    this.http = await listen(xrpc, subscriptions, config.labeler.xrpc.host, config.labeler.xrpc.port)
    this.logger.info({ xrpc: this.xrpcUrl, src: this.ctx.signer.src }, 'xrpc endpoint listening')
    this.ctx.verifyWorker.start()
    this.ctx.labelQueueWorkers.start()
    this.ctx.ingester?.start()
    this.resignLater()
  }

  /** Labels an earlier signing key signed are re-signed in the background (see LabelWriter.resignStale). */
  private resignLater(): void {
    const abort = new AbortController()
    this.resign = {
      abort,
      done: this.ctx.labelWriter
        .resignStale({ signal: abort.signal })
        .then((n) => {
          if (n) this.logger.info({ labels: n }, 'labels re-signed with the current signing key')
        })
        .catch((err: Error) => this.logger.error({ err: err.message }, 're-signing labels failed')),
    }
  }

  protected override async stopWork(): Promise<void> {
    this.resign?.abort.abort()
    await this.resign?.done
    // Ingest first: it writes labels that subscribers would otherwise miss on the way out.
    await this.ctx.ingester?.stop()
    await this.ctx.verifyWorker.stop()
    await this.ctx.labelQueueWorkers.stop()
    this.subscriptions?.closeAll()
    const http = this.http
    if (http) {
      await new Promise<void>((resolve) => {
        http.close(() => resolve())
        http.closeAllConnections()
      })
    }
    await this.ctx.labelStream.stop()
  }
}
