import { existsSync } from 'node:fs'
import type { Server } from 'node:http'
import { memberStatusChanged, TypedQueue } from '@atmos/queues'
import { BaseService } from '@atmos/runtime'
import { loadKeyring, readSecretFile, SecretFileError } from '@atmos/secrets'
import type { AdminConfig } from './config.ts'
import { type QueueReader, queueReader } from './console/pool.ts'
import { type AppContext, createContext } from './context.ts'
import { createOAuthClient, isLoopbackUrl } from './oauth/client.ts'
import { loadClientKeys } from './oauth/keys.ts'
import { createWebApp, listenWeb, webAddress } from './web.ts'

/** Dashboard and enrollment wizard for members and operators. */
export class AdminService extends BaseService<AppContext> {
  private web: Server | undefined
  private app: ReturnType<typeof createWebApp> | undefined
  private statusQueue: TypedQueue<typeof memberStatusChanged> | undefined
  /** The operator console's view of every queue's depth (read-only). */
  private queues: QueueReader | undefined

  static async create(config: AdminConfig): Promise<AdminService> {
    return new AdminService(createContext(config))
  }

  /** The routes the web endpoint serves (method and path pattern), once started: what a route sweep walks. */
  get routes(): ReadonlyArray<{ method: string; path: string }> {
    return (this.app?.routes ?? []).map((r) => ({ method: r.method, path: r.path }))
  }

  /** The web endpoint's base URL once started. */
  get webUrl(): string | undefined {
    return webAddress(this.web)
  }

  protected override async startWork(): Promise<void> {
    const { config, db, logger } = this.ctx
    const admin = config.admin
    const tokenFile = admin.operatorTokenFile
    const operatorToken = tokenFile ? readSecretFile(tokenFile) : undefined
    // An empty token would let anyone in who sends "Bearer" with nothing: refuse to start.
    if (tokenFile && !operatorToken) throw new SecretFileError(`${tokenFile} is empty`)
    // The public URL may name the port we are about to get (tests and development listen on
    // port 0): listen first, answer 503 for the instant until the app exists.
    let app: { fetch: (req: Request, env: object | undefined) => Response | Promise<Response> } | undefined
    this.web = await listenWeb(
      (req, env) => (app ? app.fetch(req, env as object | undefined) : new Response('starting', { status: 503 })),
      admin.web.host,
      admin.web.port,
    )
    const publicUrl = new URL(admin.publicUrl || this.webUrl!)
    const loopback = isLoopbackUrl(publicUrl)
    // Without its key-encryption key the admin cannot keep OAuth state: it serves the APIs
    // and says on its pages that sign-in is off, rather than refusing to start.
    let oauth: ReturnType<typeof createOAuthClient> | undefined
    if (existsSync(admin.kekFile)) {
      const keys = loopback ? [] : await loadClientKeys(admin.oauth.keysFile)
      oauth = createOAuthClient({ config: admin, publicUrl, db, keyring: loadKeyring(admin.kekFile), keys })
    } else {
      logger.warn(
        { kekFile: admin.kekFile },
        'atproto sign-in is off: no key-encryption key file; run "admin oauth init"',
      )
    }
    // The wizard's activations tell the labeler; their history rows are the outbox if Redis is away.
    this.statusQueue = new TypedQueue(memberStatusChanged, this.ctx.redis, config.redis.prefix)
    let tokenSecret: string | undefined
    try {
      tokenSecret = readSecretFile(admin.tokenSecretFile) || undefined
    } catch (err) {
      logger.warn(
        { err: (err as Error).message },
        'one-click unsubscribe (/u/) is off: the pool token secret is unreadable',
      )
    }
    this.queues = queueReader(this.ctx.redis, config.redis.prefix)
    this.app = createWebApp({
      db,
      logger,
      operatorToken,
      tokenSecret,
      config: admin,
      publicUrl,
      oauth,
      statusQueue: this.statusQueue,
      queues: this.queues,
    })
    app = this.app
    logger.info(
      {
        web: this.webUrl,
        publicUrl: publicUrl.origin,
        signin: oauth ? (loopback ? 'loopback' : 'confidential') : 'off',
      },
      'admin web endpoint listening',
    )
  }

  protected override async stopWork(): Promise<void> {
    const web = this.web
    this.web = undefined
    if (web) await new Promise<void>((resolve) => web.close(() => resolve()))
    await this.statusQueue?.close()
    this.statusQueue = undefined
    await this.queues?.close()
    this.queues = undefined
  }
}
