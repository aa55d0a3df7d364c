// The local network the stack starts before the services (tools/localnet): whether it is
// on, the ports it takes (shifted like every other port), and the defaults it gives each
// service so that they reach it instead of Jetstream, the internet's DNS and real MX hosts.
// A variable the user set always wins.
import { fileURLToPath } from 'node:url'
import { NETWORK_PORTS, SINK_PROVIDER } from '../../localnet/src/settings.ts'
import type { Listener } from './plan.ts'
import { StackConfigError } from './plan.ts'

type Env = Record<string, string | undefined>

export const NETWORK_ENTRY = fileURLToPath(new URL('../../localnet/src/main.ts', import.meta.url))

/** `--no-network` or ATMOS_STACK_NETWORK=off: the services alone, as before the network existed. */
export function networkWanted(argv: string[], env: Env): boolean {
  const unknown = argv.filter((a) => a !== '--no-network')
  if (unknown.length)
    throw new StackConfigError(
      `unknown argument ${JSON.stringify(unknown[0])}: the start command takes --no-network only`,
    )
  const value = (env.ATMOS_STACK_NETWORK ?? 'on').toLowerCase()
  if (!['on', 'off'].includes(value))
    throw new StackConfigError(`ATMOS_STACK_NETWORK=${JSON.stringify(env.ATMOS_STACK_NETWORK)}: on or off`)
  return value === 'on' && !argv.includes('--no-network')
}

export type NetworkPlan = {
  /** What the network process is started with. */
  env: Env
  /** Added to every service's environment (where not set). */
  serviceDefaults: Env
  listeners: Listener[]
  ports: Record<keyof typeof NETWORK_PORTS, number>
}

export function planNetwork(base: Env, offset: number): NetworkPlan {
  const env: Env = { ...base }
  const ports = {} as Record<keyof typeof NETWORK_PORTS, number>
  const listeners: Listener[] = []
  for (const [key, p] of Object.entries(NETWORK_PORTS) as Array<
    [keyof typeof NETWORK_PORTS, (typeof NETWORK_PORTS)['pds']]
  >) {
    const raw = base[p.variable]
    const port = raw === undefined || raw === '' ? p.port + offset : Number(raw)
    if (!/^\d{1,5}$/.test(String(port)) || port > 65535)
      throw new StackConfigError(`${p.variable}=${JSON.stringify(raw)}: a port from 1 to 65535`)
    if (port === 0) throw new StackConfigError(`${p.variable}=0: the services must know this port before it opens`)
    env[p.variable] = String(port)
    ports[key] = port
    listeners.push({
      service: 'localnet',
      what: p.what,
      host: '127.0.0.1',
      port,
      setBy: raw ? p.variable : `ATMOS_STACK_PORT_OFFSET (${p.port} + offset)`,
    })
  }
  const pool = base.ATMOS_RELAY_POOL_DOMAIN || 'atmos.localhost'
  const plc = `http://127.0.0.1:${ports.plc}`
  // The PDS's own URL (dev mode serves http://localhost:<port>): the one in its DID documents.
  const pds = `http://localhost:${ports.pds}`
  const dns = String(ports.dns)
  const serviceDefaults: Env = {
    // Labeler: the PDS's firehose instead of Jetstream; DIDs and domains checked locally.
    ATMOS_LABELER_INGEST_SOURCE: 'firehose',
    ATMOS_LABELER_INGEST_FIREHOSE_URL: pds,
    ATMOS_LABELER_VERIFY_PLC_URL: plc,
    ATMOS_LABELER_VERIFY_DNS_SERVERS: '127.0.0.1',
    ATMOS_LABELER_VERIFY_DNS_PORT: dns,
    // Relay: MX lookups in the local DNS, every MX host is the sink on its port.
    ATMOS_RELAY_DELIVERY_DNS_SERVERS: '127.0.0.1',
    ATMOS_RELAY_DELIVERY_DNS_PORT: dns,
    ATMOS_RELAY_DELIVERY_MX_PORT: String(ports.sink),
    // Admin: sign-in on the local PDS (plain HTTP), the wizard's checks on the local DNS and PLC.
    ATMOS_ADMIN_OAUTH_PLC_URL: plc,
    ATMOS_ADMIN_OAUTH_HANDLE_RESOLVER: pds,
    ATMOS_ADMIN_OAUTH_ALLOW_HTTP: 'true',
    ATMOS_ADMIN_ENROLL_PLC_URL: plc,
    ATMOS_ADMIN_ENROLL_DNS_SERVERS: '127.0.0.1',
    ATMOS_ADMIN_ENROLL_DNS_PORT: dns,
    ATMOS_ADMIN_ENROLL_SPF_INCLUDE: `_spf.${pool}`,
    ATMOS_ADMIN_ENROLL_MX_HOST: `mx.${pool}`,
    // fbl-ingest: reports checked on the local DNS, the sink trusted as a feedback-loop provider.
    ATMOS_FBL_INGEST_DNS_SERVERS: '127.0.0.1',
    ATMOS_FBL_INGEST_DNS_PORT: dns,
    ATMOS_FBL_INGEST_FEEDBACK_PROVIDERS: JSON.stringify([SINK_PROVIDER]),
    // A newcomer sends a handful of messages, not the hundred a real window needs before its
    // rates decide anything: locally two do, so that a bounce and a complaint show their effect.
    ATMOS_FBL_INGEST_THRESHOLDS_MIN_VOLUME: '2',
  }
  for (const key of Object.keys(serviceDefaults)) if (base[key] !== undefined) delete serviceDefaults[key]
  return { env, serviceDefaults, listeners, ports }
}

/** What the network's ready line carries (tools/localnet/src/main.ts). */
export type NetworkReady = {
  plcUrl: string
  pdsUrl: string
  dns: { host: string; port: number }
  sink: { host: string; port: number; hostname: string }
  webUrl: string
  demo: { did: string; handle: string; email: string; password: string; domain: string }
}

/** The summary's lines for the network (the demo password is a local demo credential, printed on purpose). */
export function networkSummary(n: NetworkReady): string[] {
  return [
    `  localnet   PDS ${n.pdsUrl}  (firehose read by the labeler; accounts sign in to the admin here)`,
    `  localnet   PLC directory ${n.plcUrl}`,
    `  localnet   DNS ${n.dns.host}:${n.dns.port}  (UDP and TCP; dig @${n.dns.host} -p ${n.dns.port} <name>)`,
    `  localnet   sink MX ${n.sink.host}:${n.sink.port}  (every recipient domain's MX, ${n.sink.hostname})`,
    `  localnet   pages ${n.webUrl}  (DNS records to publish, received mail, bounce and complaint buttons)`,
    `  localnet   demo account ${n.demo.handle}  password ${n.demo.password}  (${n.demo.did})`,
    `  localnet   demo domain ${n.demo.domain}  (publish its records: node tools/localnet/src/cli.ts dns publish '<line>')`,
  ]
}
