import type { Server } from 'node:http'
import { BaseService } from '@atmos/runtime'
import { readSecretFile, SecretFileError } from '@atmos/secrets'
import type { AdminConfig } from './config.ts'
import { type AppContext, createContext } from './context.ts'
import { createWebApp, listenWeb, webAddress } from './web.ts'

/** Dashboard and enrollment wizard for members and operators. */
export class AdminService extends BaseService<AppContext> {
  private web: Server | undefined

  static async create(config: AdminConfig): Promise<AdminService> {
    return new AdminService(createContext(config))
  }

  /** The web endpoint's base URL once started. */
  get webUrl(): string | undefined {
    return webAddress(this.web)
  }

  protected override async startWork(): Promise<void> {
    const { config, db, logger } = this.ctx
    const tokenFile = config.admin.operatorTokenFile
    const operatorToken = tokenFile ? readSecretFile(tokenFile) : undefined
    // An empty token would let anyone in who sends "Bearer" with nothing: refuse to start.
    if (tokenFile && !operatorToken) throw new SecretFileError(`${tokenFile} is empty`)
    const app = createWebApp({ db, logger, operatorToken })
    this.web = await listenWeb(app, config.admin.web.host, config.admin.web.port)
    logger.info({ web: this.webUrl, operatorApi: Boolean(operatorToken) }, 'admin web endpoint listening')
  }

  protected override async stopWork(): Promise<void> {
    const web = this.web
    this.web = undefined
    if (web) await new Promise<void>((resolve) => web.close(() => resolve()))
  }
}
