import { getServers } from 'node:dns'
import type { Db } from '@atmos/db'
import { ATTESTATION_COLLECTION, type AttestationRecord, type StatusChange } from '@atmos/enrolment'
import type { memberStatusChanged, TypedQueue } from '@atmos/queues'
import { notifyStatusChange } from '@atmos/reputation'
import type { Logger } from '@atmos/runtime'
import { loadKeyring } from '@atmos/secrets'
import { createDnsResolver, createIdentityResolver, type DnsResolver } from '@atmos/verify'
import { Agent } from '@atproto/api'
import type { NodeOAuthClient } from '@atproto/oauth-client-node'
import type { Context, Hono } from 'hono'
import { CheckRateLimiter } from '../enroll/check.ts'
import type { EnrollConfig } from '../enroll/config.ts'
import { enrollRoutes } from '../enroll/routes.ts'
import { type Account, WizardError } from '../enroll/wizard.ts'
import type { LabelReader } from '../labels/query.ts'
import { errorPage, layout, raw } from './layout.ts'
import { pageSession, requireSignIn } from './pages.ts'
import type { SessionVars } from './session.ts'
import { clientInfo } from './signin.ts'

type Env = { Variables: SessionVars }

/**
 * Mounts the enrollment wizard behind our session: the signed-in DID is the account, its
 * forms carry the session's CSRF token, its pages use the shared layout, and "publish"
 * writes the attestation through the account's own OAuth session. Without the relay's
 * key-encryption keys (the wizard seals the DKIM keys it issues) the wizard says it is off.
 */
export function mountEnroll(
  app: Hono<Env>,
  opts: {
    db: Db
    logger: Logger
    oauth: NodeOAuthClient
    config: EnrollConfig
    maxDomains: number
    statusQueue: TypedQueue<typeof memberStatusChanged> | undefined
    /** Our labeler's queryLabels: the labels page after publishing reads the account's labels through it. */
    readLabels: LabelReader
  },
): void {
  const { config, logger } = opts
  app.use('/enroll', requireSignIn)
  app.use('/enroll/*', requireSignIn)
  let keyring: ReturnType<typeof loadKeyring>
  try {
    keyring = loadKeyring(config.kekFile)
  } catch (err) {
    logger.warn({ kekFile: config.kekFile, err: (err as Error).message }, 'the enrollment wizard is off')
    const off = () =>
      errorPage(503, 'Enrolment is not available', 'The operator has not finished setting up enrolment yet.')
    app.all('/enroll', off)
    app.all('/enroll/*', off)
    return
  }
  const routes = enrollRoutes({
    sql: opts.db.$client,
    keyring,
    dns: wizardResolver(config),
    identity: createIdentityResolver({ plcUrl: config.plcUrl }),
    config,
    maxDomains: opts.maxDomains,
    limiter: new CheckRateLimiter(config.checkLimit, config.checkWindow),
    readLabels: opts.readLabels,
    account: (c: Context) => {
      const s = (c as Context<Env>).get('session')
      return s ? { did: s.did } : null
    },
    announce: async (change: StatusChange) => {
      // The history row is the outbox: a change Redis did not take is sent again by the reconciler.
      if (!opts.statusQueue) return
      await notifyStatusChange(opts.db, opts.statusQueue, change)
    },
    csrf: (c: Context) => (c as Context<Env>).get('session')?.csrf ?? '',
    render: (c: Context, fragment: string, status = 200) => {
      const s = (c as Context<Env>).get('session')
      // The fragment's heading, escaped by the views, is the page's title too (the layout escapes it again).
      const heading = /<h1>([^<]*)<\/h1>/.exec(fragment)?.[1]
      const title = heading ? unescapeHtml(heading) : 'Enrol a mail domain'
      return c.html(layout({ title, body: raw(fragment), session: s ? pageSession(s, null) : null }), status)
    },
    auditDetail: (c: Context) => ({ ip: clientInfo(c).ip }),
    publish: (account, record) => publishAttestation(opts.oauth, account, record),
  })
  app.route('/enroll', routes)
}

/** The resolver the wizard's checks ask (admin.enroll.dns*): the labeler's own must answer the same. */
export function wizardResolver(config: EnrollConfig): DnsResolver {
  return createDnsResolver({
    servers: config.dnsServers.length ? config.dnsServers : getServers(),
    port: config.dnsPort || undefined,
    timeoutMs: config.dnsTimeout,
    tries: config.dnsTries,
  })
}

/**
 * Writes the attestation record (record key = the domain) to the account's own repository
 * through its OAuth session; returns the record's URI. A session the PDS no longer honours
 * is a WizardError (403) telling the member to sign in again.
 */
export async function publishAttestation(
  oauth: NodeOAuthClient,
  account: Account,
  record: AttestationRecord,
): Promise<string> {
  let agent: Agent
  try {
    agent = new Agent(await oauth.restore(account.did))
  } catch {
    throw new WizardError('Your sign-in at your PDS has ended: sign out and in again, then publish.', 403)
  }
  const res = await agent.com.atproto.repo.putRecord({
    repo: account.did,
    collection: ATTESTATION_COLLECTION,
    rkey: record.domain,
    record: { ...record },
  })
  return res.data.uri
}

const ENTITIES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" }

function unescapeHtml(text: string): string {
  return text.replace(/&(?:amp|lt|gt|quot|#39);/g, (e) => ENTITIES[e]!)
}
