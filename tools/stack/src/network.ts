// The local network the stack starts before the services (tools/localnet): whether it is
// on, the ports it takes (shifted like every other port), and the defaults it gives each
// service so that they reach it instead of Jetstream, the internet's DNS and real MX hosts.
// A variable the user set always wins.
import { fileURLToPath } from 'node:url'
import { serviceDefaults as localServiceDefaults } from '../../localnet/src/service-env.ts'
import { NETWORK_PORTS } from '../../localnet/src/settings.ts'
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
  const serviceDefaults: Env = localServiceDefaults({
    plcUrl: plc,
    pdsUrl: pds,
    dnsPort: ports.dns,
    sinkPort: ports.sink,
    poolDomain: pool,
  })
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
