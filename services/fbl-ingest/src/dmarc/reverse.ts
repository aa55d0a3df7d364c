import { Resolver } from 'node:dns/promises'
import { isIPv6 } from 'node:net'

// Reverse names of reports' source IPs, so a member reads "mail-sor-f41.google.com" rather
// than an address. Each lookup is bounded (one try, reverseTimeout), a report asks for at
// most `perReport` distinct addresses a few at a time, and answers (failures too) are kept
// for an hour: one busy source in a hundred reports is one query. A name is what the
// address's owner claims (not forward-confirmed): the page shows it as such.

export type ReverseNames = { namesFor(ips: readonly string[]): Promise<Map<string, string>> }

const CACHE_MAX = 20_000
const CACHE_TTL_MS = 3_600_000
const PARALLEL = 8

export function reverseNames(opts: {
  servers: string[]
  port: number | undefined
  timeoutMs: number
  perReport: number
}): ReverseNames {
  const resolver = new Resolver({ timeout: opts.timeoutMs, tries: 1 })
  if (opts.servers.length) resolver.setServers(opts.servers.map((s) => withPort(s, opts.port)))
  const cache = new Map<string, { name: string; until: number }>()

  const lookup = async (ip: string): Promise<string> => {
    const hit = cache.get(ip)
    if (hit && hit.until > Date.now()) return hit.name
    // c-ares' own timeout bounds the query; the race is a backstop for a resolver that never answers.
    const name = await Promise.race([
      resolver.reverse(ip).then(
        (names) => cleanName(names[0]),
        () => '',
      ),
      new Promise<string>((resolve) => setTimeout(() => resolve(''), opts.timeoutMs * 2).unref()),
    ])
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!)
    cache.set(ip, { name, until: Date.now() + CACHE_TTL_MS })
    return name
  }

  return {
    async namesFor(ips) {
      const wanted = [...new Set(ips)].slice(0, opts.perReport)
      const out = new Map<string, string>()
      for (let i = 0; i < wanted.length; i += PARALLEL) {
        const batch = wanted.slice(i, i + PARALLEL)
        const names = await Promise.all(batch.map(lookup))
        batch.forEach((ip, j) => {
          if (names[j]) out.set(ip, names[j]!)
        })
      }
      return out
    },
  }
}

/** A PTR answer is whatever the address's owner wrote: kept only if it reads as a host name. */
function cleanName(name: string | undefined): string {
  const n = (name ?? '').toLowerCase().replace(/\.$/, '')
  if (n.length === 0 || n.length > 253) return ''
  return n.split('.').every((l) => /^[a-z0-9_](?:[a-z0-9_-]{0,62})$/.test(l)) ? n : ''
}

function withPort(server: string, port: number | undefined): string {
  if (!port) return server
  if (isIPv6(server)) return `[${server}]:${port}`
  if (server.startsWith('[') || /^[^:]+:\d+$/.test(server)) return server
  return `${server}:${port}`
}
