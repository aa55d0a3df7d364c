import { request } from 'node:https'
import type { LookupFunction } from 'node:net'
import type { Logger } from '@atmos/runtime'
import { type DnsResolver, describeDnsError, isAbsence } from '@atmos/verify'
import type { Redis } from 'ioredis'
import { z } from 'zod'

/** A domain's MTA-STS policy (RFC 8461 section 3.2), as fetched. */
export type StsPolicy = {
  /** The id of the TXT record it was fetched under. */
  id: string
  mode: 'enforce' | 'testing' | 'none'
  /** MX host patterns, lower case; `*.example.net` stands for exactly one label. */
  mx: string[]
  maxAgeS: number
  /** Epoch milliseconds after which the policy no longer holds. */
  expiresAt: number
}

/** A policy as kept in Redis: read back only when it has this shape. */
const storedPolicy = z.object({
  id: z.string(),
  mode: z.enum(['enforce', 'testing', 'none']),
  mx: z.array(z.string()),
  maxAgeS: z.number().int().nonnegative(),
  expiresAt: z.number(),
})

/** RFC 8461 section 3.2: max_age is at most a year. */
const MAX_AGE_S = 31_557_600
/** Section 3.3: a policy body beyond 64 KiB is refused. */
const MAX_POLICY_BYTES = 64 * 1024
/** How long a TXT answer is trusted before it is asked again (a cached policy is reused meanwhile). */
const TXT_RECHECK_MS = 5 * 60_000

export type MtaStsOptions = {
  dns: DnsResolver
  redis: Redis
  prefix: string
  /** 443 in production; tests serve policies on a loopback port. */
  port: number
  timeoutMs: number
  /** CA certificates to verify policy hosts with (the system's plus any configured); absent: Node's own. */
  ca?: string[] | undefined
  logger: Logger
  /** How long a TXT answer is reused; 0 asks every time. */
  recheckMs?: number
  /**
   * Which addresses the fetch may connect to: the policy host is named by a stranger's DNS,
   * so, like an MX host, it must not point the relay at its own internal network.
   */
  addressPolicy: { refusal(address: string): string | undefined }
}

/**
 * MTA-STS policies of recipient domains: discovered through `_mta-sts.<domain>` TXT, fetched
 * over verified HTTPS (no redirects, bounded size and time, text/plain), and cached until
 * their max_age. A policy lives in this process and in Redis with max_age as its TTL, so a
 * restart does not forget an `enforce` policy (section 5.1: a sender keeps a policy until it
 * expires even when the TXT record vanishes, else an attacker who strips DNS strips TLS too).
 * Redis holds only a copy that can be fetched again: losing it is the first-contact risk
 * every new sender takes, not lost mail.
 */
export class MtaSts {
  private readonly opts: MtaStsOptions
  /** Per domain: its policy (none when it has none), and when its TXT record was last asked. */
  private readonly cache = new Map<string, { policy: StsPolicy | undefined; checkedAt: number }>()
  /** Lookups under way: concurrent deliveries to one domain share one TXT query and one fetch. */
  private readonly inflight = new Map<string, Promise<StsPolicy | undefined>>()

  constructor(opts: MtaStsOptions) {
    this.opts = opts
  }

  /** The domain's policy in force, or undefined when it has none (or mode none). */
  policy(domain: string): Promise<StsPolicy | undefined> {
    const key = domain.toLowerCase()
    const running = this.inflight.get(key)
    if (running) return running
    const lookup = this.lookup(key).finally(() => this.inflight.delete(key))
    this.inflight.set(key, lookup)
    return lookup
  }

  private async lookup(key: string): Promise<StsPolicy | undefined> {
    const now = Date.now()
    const cached = this.cache.get(key)
    // Between TXT checks the answer stands, a domain without a policy included: most have none.
    if (cached && now - cached.checkedAt < (this.opts.recheckMs ?? TXT_RECHECK_MS)) {
      if (!cached.policy || cached.policy.expiresAt > now) return inForce(cached.policy)
    }
    let known = cached ? cached.policy : await this.load(key)
    if (known && known.expiresAt <= now) known = undefined

    const txt = await this.txtId(key)
    let policy = known
    // Section 5.1: refreshed before it lapses (past half its max_age), so that an attacker
    // who blocks the policy host at the moment of expiry cannot drop it.
    const stale = known !== undefined && known.expiresAt - now < (known.maxAgeS * 1000) / 2
    if (txt.status === 'found' && (txt.id !== known?.id || stale)) {
      const fetched = await this.fetch(key, txt.id)
      if (fetched.ok) {
        policy = fetched.policy
        await this.store(key, policy)
      } else {
        // Section 5.1: a policy that cannot be refreshed holds until it expires.
        this.opts.logger.warn({ domain: key, err: fetched.reason }, 'MTA-STS policy fetch failed')
      }
    }
    // No record, or DNS failing: a known policy holds until it expires too (section 5.1).
    if (this.cache.size > 10_000) this.cache.clear()
    this.cache.set(key, { policy, checkedAt: now })
    return inForce(policy)
  }

  private redisKey(domain: string): string {
    return `${this.opts.prefix}:mta-sts:${domain}`
  }

  private async load(domain: string): Promise<StsPolicy | undefined> {
    try {
      const raw = await this.opts.redis.get(this.redisKey(domain))
      const parsed = raw ? storedPolicy.safeParse(JSON.parse(raw)) : undefined
      return parsed?.success ? parsed.data : undefined
    } catch {
      return undefined
    }
  }

  private async store(domain: string, policy: StsPolicy): Promise<void> {
    const ttl = policy.expiresAt - Date.now()
    if (ttl <= 0) return
    await this.opts.redis.set(this.redisKey(domain), JSON.stringify(policy), 'PX', ttl).catch((err: Error) => {
      this.opts.logger.warn({ domain, err: err.message }, 'MTA-STS policy not persisted (redis)')
    })
  }

  private async txtId(domain: string): Promise<{ status: 'found'; id: string } | { status: 'none' | 'temperror' }> {
    try {
      const records = (await this.opts.dns.resolveTxt(`_mta-sts.${domain}`)).map((parts) => parts.join(''))
      const sts = records.filter((r) => /^v=STSv1(;|$)/.test(r.trim()))
      // Section 3.1: more than one STSv1 record is as good as none.
      if (sts.length !== 1) return { status: 'none' }
      const id = /(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(?:;|$)/.exec(sts[0] ?? '')?.[1]
      return id ? { status: 'found', id } : { status: 'none' }
    } catch (err) {
      if (isAbsence(err)) return { status: 'none' }
      this.opts.logger.debug({ domain, err: describeDnsError(err) }, 'MTA-STS TXT lookup failed')
      return { status: 'temperror' }
    }
  }

  private async fetch(
    domain: string,
    id: string,
  ): Promise<{ ok: true; policy: StsPolicy } | { ok: false; reason: string }> {
    const host = `mta-sts.${domain}`
    let body: string
    try {
      body = await this.get(host)
    } catch (err) {
      return { ok: false, reason: (err as Error).message }
    }
    const parsed = parsePolicy(body)
    if (!parsed.ok) return parsed
    return { ok: true, policy: { id, ...parsed.policy, expiresAt: Date.now() + parsed.policy.maxAgeS * 1000 } }
  }

  /** The policy text from the policy host, over HTTPS verified for that name. */
  private get(host: string): Promise<string> {
    const { dns } = this.opts
    // The policy host resolves through the relay's own resolvers, as MX hosts do.
    const lookup: LookupFunction = (hostname, options, callback) => {
      void Promise.allSettled([dns.resolve4(hostname), dns.resolve6(hostname)]).then(([v4, v6]) => {
        const found = [
          ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 })) : []),
          ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 })) : []),
        ]
        const all = found.filter((a) => this.opts.addressPolicy.refusal(a.address) === undefined)
        const first = all[0]
        if (!first) {
          const reason =
            found.length > 0
              ? new Error(`${hostname} has only internal addresses (${found.map((a) => a.address).join(', ')})`)
              : v4.status === 'rejected'
                ? v4.reason
                : new Error(`${hostname} has no address`)
          callback(reason as NodeJS.ErrnoException, '', 4)
        } else if ((options as { all?: boolean }).all) (callback as (e: null, a: typeof all) => void)(null, all)
        else callback(null, first.address, first.family)
      })
    }
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host,
          port: this.opts.port,
          path: '/.well-known/mta-sts.txt',
          method: 'GET',
          servername: host,
          ...(this.opts.ca ? { ca: this.opts.ca } : {}),
          rejectUnauthorized: true,
          lookup,
          headers: { 'user-agent': 'atmos-relay' },
          signal: AbortSignal.timeout(this.opts.timeoutMs),
        },
        (res) => {
          // Section 3.3: redirects are not followed; only a 200 carries a policy.
          if (res.statusCode !== 200) {
            res.resume()
            return reject(new Error(`HTTP ${res.statusCode} from ${host}`))
          }
          const type = String(res.headers['content-type'] ?? '')
          if (!/^text\/plain\s*(;|$)/i.test(type)) {
            res.resume()
            return reject(new Error(`content-type ${type || 'none'} from ${host}, not text/plain`))
          }
          const chunks: Buffer[] = []
          let size = 0
          res.on('data', (chunk: Buffer) => {
            size += chunk.length
            if (size > MAX_POLICY_BYTES) {
              req.destroy(new Error(`policy from ${host} is over ${MAX_POLICY_BYTES} bytes`))
              return
            }
            chunks.push(chunk)
          })
          res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
          res.on('error', reject)
        },
      )
      req.on('error', (err) => reject(new Error(`${host}: ${err.message}`)))
      req.end()
    })
  }
}

function inForce(policy: StsPolicy | undefined): StsPolicy | undefined {
  return policy?.mode === 'none' ? undefined : policy
}

/** RFC 8461 section 3.2: `key: value` lines; version, mode and max_age required, mx for enforce and testing. */
export function parsePolicy(
  text: string,
): { ok: true; policy: Omit<StsPolicy, 'id' | 'expiresAt'> } | { ok: false; reason: string } {
  const fields = new Map<string, string[]>()
  for (const line of text.split(/\r?\n/)) {
    // Split at the colon rather than with one pattern: `(.*?)[ \t]*$` backtracks on long blank runs.
    const colon = line.indexOf(':')
    const name = line.slice(0, colon)
    if (colon <= 0 || !/^[A-Za-z0-9_]+$/.test(name)) continue
    const key = name.toLowerCase()
    fields.set(key, [
      ...(fields.get(key) ?? []),
      line
        .slice(colon + 1)
        .replace(/^[ \t]+/, '')
        .trimEnd(),
    ])
  }
  if (fields.get('version')?.[0] !== 'STSv1') return { ok: false, reason: 'policy version is not STSv1' }
  const mode = fields.get('mode')?.[0]
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') {
    return { ok: false, reason: `policy mode ${mode ?? 'missing'}` }
  }
  const maxAge = fields.get('max_age')?.[0] ?? ''
  if (!/^\d{1,10}$/.test(maxAge)) return { ok: false, reason: 'policy max_age missing or not a number' }
  const mx = (fields.get('mx') ?? []).map((p) => p.toLowerCase().replace(/\.$/, '')).filter(Boolean)
  if (mode !== 'none' && mx.length === 0) return { ok: false, reason: `policy in mode ${mode} names no mx` }
  return { ok: true, policy: { mode, mx, maxAgeS: Math.min(Number(maxAge), MAX_AGE_S) } }
}

/** Section 4.1: a pattern matches the host exactly, or `*.` stands for its one leftmost label. */
export function mxMatches(patterns: string[], host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, '')
  return patterns.some((p) => {
    if (!p.startsWith('*.')) return p === name
    const dot = name.indexOf('.')
    return dot > 0 && name.slice(dot + 1) === p.slice(2)
  })
}
