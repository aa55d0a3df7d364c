// What the stack is about to start, worked out before anything starts: each service's
// environment, its configuration validated exactly as the service will load it (so a bad
// variable is named by the stack, not by `labeler init` or a child's exit code), and every
// listener it will open with the variable that moves it.
import { ConfigError, loadConfig } from '@atmos/config'
import { adminConfigSchema } from '../../../services/admin/src/config.ts'
import { fblIngestConfigSchema } from '../../../services/fbl-ingest/src/config.ts'
import { labelerConfigSchema } from '../../../services/labeler/src/config.ts'
import { relayConfigSchema } from '../../../services/relay/src/config.ts'
import { schedulerConfigSchema } from '../../../services/scheduler/src/config.ts'
import { webhooksConfigSchema } from '../../../services/webhooks/src/config.ts'
import { LOCAL_PORTS, SERVICES, type ServiceName } from './services.ts'

type Env = Record<string, string | undefined>

/** A problem in the stack's own settings: the message names the variable; exit 2 like a service's config error. */
export class StackConfigError extends Error {
  override name = 'StackConfigError'
}

export type Listener = {
  service: ServiceName | 'localnet'
  /** What listens there, as the summary and a port clash name it. */
  what: string
  host: string
  port: number
  /** The variable that moves it. */
  setBy: string
}

export type PlannedService = (typeof SERVICES)[number] & { env: Env; listeners: Listener[] }

const MAX_OFFSET = 65535 - Math.max(...SERVICES.map((s) => s.port), ...Object.values(LOCAL_PORTS))

/** ATMOS_STACK_PORT_OFFSET, checked so that every shifted port stays a port. */
export function portOffset(env: Env): number {
  const raw = env.ATMOS_STACK_PORT_OFFSET ?? ''
  if (raw === '') return 0
  const offset = Number(raw)
  if (!/^\d{1,5}$/.test(raw) || offset > MAX_OFFSET)
    throw new StackConfigError(
      `ATMOS_STACK_PORT_OFFSET=${JSON.stringify(raw)}: a whole number from 0 to ${MAX_OFFSET} (it shifts every port of the stack)`,
    )
  return offset
}

const SCHEMAS = {
  labeler: labelerConfigSchema,
  relay: relayConfigSchema,
  scheduler: schedulerConfigSchema,
  'fbl-ingest': fblIngestConfigSchema,
  admin: adminConfigSchema,
  webhooks: webhooksConfigSchema,
} as const

/**
 * Each service's environment and listeners. `base` is the caller's environment plus
 * anything the stack adds for every service (pool identity, certificate files).
 */
export function planServices(base: Env): PlannedService[] {
  // One variable cannot set six ports; left alone, each service would silently take
  // the stack's port instead (and `labeler init` would reject an invalid one).
  if (base.ATMOS_HTTP_PORT !== undefined)
    throw new StackConfigError(
      `ATMOS_HTTP_PORT=${JSON.stringify(base.ATMOS_HTTP_PORT)} is set, but the stack gives each service its own ops port ` +
        `(${SERVICES.map((s) => `${s.name} ${s.port}`).join(', ')}): unset it, and shift them all with ATMOS_STACK_PORT_OFFSET`,
    )
  const offset = portOffset(base)
  const shared: Env = { ...base }
  for (const [name, port] of Object.entries(LOCAL_PORTS)) shared[name] = base[name] || String(port + offset)
  // Locally the inbound listener is for this machine's sink and tests only.
  shared.ATMOS_FBL_INGEST_SMTP_HOST = base.ATMOS_FBL_INGEST_SMTP_HOST || '127.0.0.1'
  // The admin reads labels from this stack's labeler, wherever the offset put it (an
  // invalid port is the labeler's error to report, not a URL made from it).
  const xrpcPort = shared.ATMOS_LABELER_XRPC_PORT ?? ''
  if (/^\d{1,5}$/.test(xrpcPort) && Number(xrpcPort) > 0) {
    const labelApi = `http://${base.ATMOS_LABELER_XRPC_HOST || '127.0.0.1'}:${xrpcPort}`
    shared.ATMOS_ADMIN_LABELER_URL = base.ATMOS_ADMIN_LABELER_URL ?? labelApi
    shared.ATMOS_LABELER_PUBLIC_URL = base.ATMOS_LABELER_PUBLIC_URL ?? labelApi
  }
  // The wizard tells members where to submit: this stack's submission listener, not the
  // production default of 587 (a newcomer would copy a port nothing listens on).
  // (An invalid submission port is the relay's error to report, not the admin's too.)
  const submissionPort = shared.ATMOS_RELAY_SUBMISSION_PORT ?? ''
  if (base.ATMOS_ADMIN_ENROLL_RELAY_PORT === undefined && /^\d{1,5}$/.test(submissionPort)) {
    if (Number(submissionPort) > 0 && Number(submissionPort) < 65536)
      shared.ATMOS_ADMIN_ENROLL_RELAY_PORT = submissionPort
  }
  shared.ATMOS_ADMIN_ENROLL_RELAY_HOST = base.ATMOS_ADMIN_ENROLL_RELAY_HOST ?? '127.0.0.1'
  // One-click unsubscribe links point at this stack's admin (its /u page), wherever the offset put it,
  // and the admin verifies them with the relay's token secret.
  const adminPort = shared.ATMOS_ADMIN_WEB_PORT ?? ''
  if (base.ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_URL === undefined && /^\d{1,5}$/.test(adminPort)) {
    const publicUrl = base.ATMOS_ADMIN_PUBLIC_URL || `http://127.0.0.1:${adminPort}`
    shared.ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_URL = `${publicUrl.replace(/\/$/, '')}/u`
  }
  const tokenSecret = base.ATMOS_RELAY_POOL_TOKEN_SECRET_FILE
  if (tokenSecret && base.ATMOS_ADMIN_TOKEN_SECRET_FILE === undefined)
    shared.ATMOS_ADMIN_TOKEN_SECRET_FILE = tokenSecret
  // The local stack serves the HTTP send API beside SMTP (production turns it on where its ingress is).
  shared.ATMOS_RELAY_API_ENABLED = base.ATMOS_RELAY_API_ENABLED ?? 'true'
  // The local network's MX hosts are on loopback, which the relay refuses unless allowed.
  shared.ATMOS_RELAY_DELIVERY_ALLOWED_PRIVATE_NETWORKS =
    base.ATMOS_RELAY_DELIVERY_ALLOWED_PRIVATE_NETWORKS ?? '127.0.0.0/8,::1/128'

  const problems: string[] = []
  const planned = SERVICES.map((service) => {
    const env: Env = { ...shared, ATMOS_HTTP_PORT: String(service.port + offset) }
    let listeners: Listener[] = []
    try {
      listeners = listenersOf(service.name, env, service.port)
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      problems.push(`${service.name}: ${err.message.replace(/\n/g, '\n  ')}`)
    }
    return { ...service, env, listeners }
  })
  if (problems.length) throw new StackConfigError(problems.join('\n'))
  return planned
}

function listenersOf(name: ServiceName, env: Env, opsBase: number): Listener[] {
  const ops = (config: { http: { host: string; port: number } }): Listener => ({
    service: name,
    what: 'ops',
    host: config.http.host,
    port: config.http.port,
    setBy: `ATMOS_STACK_PORT_OFFSET (${opsBase} + offset)`,
  })
  switch (name) {
    case 'labeler': {
      const c = loadConfig(SCHEMAS.labeler, { env })
      const xrpc = c.labeler.xrpc
      return [
        ops(c),
        { service: name, what: 'label API', host: xrpc.host, port: xrpc.port, setBy: 'ATMOS_LABELER_XRPC_PORT' },
      ]
    }
    case 'relay': {
      const c = loadConfig(SCHEMAS.relay, { env })
      const sub = c.relay.submission
      if (!c.relay.roles.includes('submission')) return [ops(c)]
      const starttls: Listener = {
        service: name,
        what: 'submission',
        host: sub.host,
        port: sub.port,
        setBy: 'ATMOS_RELAY_SUBMISSION_PORT',
      }
      const api: Listener[] = c.relay.api.enabled
        ? [
            {
              service: name,
              what: 'send API',
              host: c.relay.api.host,
              port: c.relay.api.port,
              setBy: 'ATMOS_RELAY_API_PORT',
            },
          ]
        : []
      if (!sub.tlsPort) return [ops(c), starttls, ...api]
      return [
        ops(c),
        starttls,
        ...api,
        {
          service: name,
          what: 'submission (implicit TLS)',
          host: sub.host,
          port: sub.tlsPort,
          setBy: 'ATMOS_RELAY_SUBMISSION_TLS_PORT',
        },
      ]
    }
    case 'scheduler':
      return [ops(loadConfig(SCHEMAS.scheduler, { env }))]
    case 'webhooks':
      return [ops(loadConfig(SCHEMAS.webhooks, { env }))]
    case 'fbl-ingest': {
      const c = loadConfig(SCHEMAS['fbl-ingest'], { env })
      const smtp = c.fblIngest.smtp
      if (!c.fblIngest.roles.includes('smtp')) return [ops(c)]
      return [
        ops(c),
        { service: name, what: 'inbound SMTP', host: smtp.host, port: smtp.port, setBy: 'ATMOS_FBL_INGEST_SMTP_PORT' },
      ]
    }
    case 'admin': {
      const c = loadConfig(SCHEMAS.admin, { env })
      return [
        ops(c),
        { service: name, what: 'web', host: c.admin.web.host, port: c.admin.web.port, setBy: 'ATMOS_ADMIN_WEB_PORT' },
      ]
    }
  }
}
