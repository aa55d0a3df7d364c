import { Resolver } from 'node:dns/promises'
import { isIPv6 } from 'node:net'

export type MxRecord = { exchange: string; priority: number }

/**
 * The DNS questions the checks ask. Errors keep node:dns's codes (`ENOTFOUND`,
 * `ESERVFAIL`, …); `resolve(name, type)` is the shape mailauth takes as its resolver.
 */
export interface DnsResolver {
  resolveTxt(name: string): Promise<string[][]>
  resolveMx(name: string): Promise<MxRecord[]>
  resolve4(name: string): Promise<string[]>
  resolve6(name: string): Promise<string[]>
  resolveCname(name: string): Promise<string[]>
  resolve(name: string, type: string): Promise<unknown>
}

export type DnsResolverOptions = {
  /** Addresses of recursive (or, in tests, authoritative) servers: `1.1.1.1`, `127.0.0.1:5353`, `[::1]:53`. */
  servers: string[]
  /** Port for the servers that do not name one. */
  port?: number
  /** Per try; c-ares doubles it on each retry. */
  timeoutMs?: number
  tries?: number
}

/** A resolver of its own (no shared state with node's global one) over the given servers. */
export function createDnsResolver(opts: DnsResolverOptions): DnsResolver {
  if (opts.servers.length === 0) throw new Error('createDnsResolver needs at least one server')
  const resolver = new Resolver({ timeout: opts.timeoutMs ?? 2000, tries: opts.tries ?? 2 })
  resolver.setServers(opts.servers.map((server) => withPort(server, opts.port)))
  return {
    resolveTxt: (name) => nonEmpty(name, resolver.resolveTxt(name)),
    resolveMx: (name) => nonEmpty(name, resolver.resolveMx(name)),
    resolve4: (name) => nonEmpty(name, resolver.resolve4(name)),
    resolve6: (name) => nonEmpty(name, resolver.resolve6(name)),
    resolveCname: (name) => nonEmpty(name, resolver.resolveCname(name)),
    resolve: (name, type) => nonEmpty(name, resolver.resolve(name, type) as Promise<unknown>),
  }
}

/**
 * c-ares resolves an answer that holds only a CNAME (its target has no such record) to
 * an empty list rather than ENODATA. It is NODATA all the same, and mailauth counts void
 * lookups by that code, so it is reported as one.
 */
async function nonEmpty<T>(name: string, answer: Promise<T>): Promise<T> {
  const value = await answer
  if (Array.isArray(value) && value.length === 0) {
    throw Object.assign(new Error(`query ENODATA ${name}`), { code: 'ENODATA', hostname: name })
  }
  return value
}

function withPort(server: string, port: number | undefined): string {
  if (port === undefined) return server
  if (isIPv6(server)) return `[${server}]:${port}`
  if (server.startsWith('[') || /^[^:]+:\d+$/.test(server)) return server
  return `${server}:${port}`
}

/**
 * NXDOMAIN (`ENOTFOUND`) and NODATA (`ENODATA`) say the record does not exist. Every
 * other failure (SERVFAIL, REFUSED, timeouts, refused connections, unparseable answers,
 * a resolver that threw something odd) says nothing about the record: it is temporary,
 * and must never be read as absence, or a DNS hiccup would fail a good domain.
 */
export function isAbsence(err: unknown): boolean {
  const code = errorCode(err)
  return code === 'ENOTFOUND' || code === 'ENODATA'
}

export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : 'EUNKNOWN'
}

const DESCRIPTIONS: Record<string, string> = {
  ENOTFOUND: 'the name does not exist (NXDOMAIN)',
  ENODATA: 'the name has no such record',
  ESERVFAIL: 'the DNS server failed (SERVFAIL)',
  EREFUSED: 'the DNS server refused the query (REFUSED)',
  ETIMEOUT: 'the DNS query timed out',
  ECONNREFUSED: 'the DNS server could not be reached',
  EBADRESP: 'the DNS answer was malformed',
  EFORMERR: 'the DNS answer was malformed',
}

/** What went wrong, in words, for a reason sentence. */
export function describeDnsError(err: unknown): string {
  const code = errorCode(err)
  return DESCRIPTIONS[code] ?? `the DNS lookup failed (${code})`
}

export type Lookup<T> =
  | { status: 'found'; records: T }
  | { status: 'absent'; code: string }
  | { status: 'temperror'; code: string; error: string }

/** Runs one query and sorts its outcome into found, absent or temporary. Never throws. */
export async function lookup<T>(query: () => Promise<T>): Promise<Lookup<T>> {
  try {
    return { status: 'found', records: await query() }
  } catch (err) {
    if (isAbsence(err)) return { status: 'absent', code: errorCode(err) }
    return { status: 'temperror', code: errorCode(err), error: describeDnsError(err) }
  }
}
