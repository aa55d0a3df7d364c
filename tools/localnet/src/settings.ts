import { resolve } from 'node:path'

// The few variables the network reads (README, "The local network"). The stack sets them
// from its own port plan; run by hand, the defaults are the stack's.

type Env = Record<string, string | undefined>

/** The sink's own domain: its host name, and the domain its reports are signed and sent from. */
export const SINK_DOMAIN = 'sink.localnet.test'
export const SINK_HOST = `mx.${SINK_DOMAIN}`
/** The feedback-loop provider fbl-ingest is configured to trust locally: the sink. */
export const SINK_PROVIDER = { name: 'localnet-sink', dkimDomains: [SINK_DOMAIN], sendingDomains: [SINK_DOMAIN] }

/** The default ports, before ATMOS_STACK_PORT_OFFSET: unprivileged, on loopback. */
export const NETWORK_PORTS: Record<keyof NetworkPorts, { variable: string; port: number; what: string }> = {
  plc: { variable: 'ATMOS_LOCALNET_PLC_PORT', port: 2582, what: 'PLC directory' },
  pds: { variable: 'ATMOS_LOCALNET_PDS_PORT', port: 2584, what: 'PDS' },
  dns: { variable: 'ATMOS_LOCALNET_DNS_PORT', port: 2553, what: 'DNS (UDP and TCP)' },
  sink: { variable: 'ATMOS_LOCALNET_SINK_PORT', port: 2526, what: 'sink MX' },
  web: { variable: 'ATMOS_LOCALNET_WEB_PORT', port: 3001, what: 'network pages' },
}

export type NetworkPorts = { plc: number; pds: number; dns: number; sink: number; web: number }

export type NetworkSettings = {
  stateDir: string
  databaseUrl: string
  plcDatabaseUrl: string
  ports: NetworkPorts
  pool: { domain: string; bounceDomain: string }
  inbound: { host: string; port: number }
}

export class NetworkSettingsError extends Error {
  override name = 'NetworkSettingsError'
}

/**
 * The PLC directory's own database on the services' server: `<their name>_localnet_plc`
 * (atmos_localnet_plc by default), so that DIDs stay paired with the members that name them.
 */
export function plcDatabaseUrl(databaseUrl: string): string {
  const u = new URL(databaseUrl)
  const name = decodeURIComponent(u.pathname.replace(/^\//, '')) || 'atmos'
  u.pathname = `/${encodeURIComponent(`${name}_localnet_plc`)}`
  return u.toString()
}

function port(env: Env, variable: string, fallback: number): number {
  const raw = env[variable]
  if (raw === undefined || raw === '') return fallback
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535)
    throw new NetworkSettingsError(`${variable}=${JSON.stringify(raw)}: a port from 0 to 65535`)
  return Number(raw)
}

export function networkSettings(env: Env): NetworkSettings {
  const databaseUrl = env.ATMOS_DATABASE_URL || 'postgres://root@127.0.0.1:5432/atmos'
  const ports = Object.fromEntries(
    Object.entries(NETWORK_PORTS).map(([k, p]) => [k, port(env, p.variable, p.port)]),
  ) as NetworkPorts
  return {
    stateDir: resolve(env.ATMOS_LOCALNET_STATE_DIR || '.state/localnet'),
    databaseUrl,
    plcDatabaseUrl: env.ATMOS_LOCALNET_PLC_DATABASE_URL || plcDatabaseUrl(databaseUrl),
    ports,
    pool: {
      domain: env.ATMOS_RELAY_POOL_DOMAIN || 'atmos.localhost',
      bounceDomain: env.ATMOS_RELAY_POOL_BOUNCE_DOMAIN || 'bounces.atmos.localhost',
    },
    inbound: {
      host: env.ATMOS_FBL_INGEST_SMTP_HOST || '127.0.0.1',
      port: port(env, 'ATMOS_FBL_INGEST_SMTP_PORT', 2525),
    },
  }
}
