import { lookup as dnsLookup } from 'node:dns/promises'
import http from 'node:http'
import https from 'node:https'
import { isIP, type LookupFunction } from 'node:net'
import { forbiddenAddress } from '@atmos/webhook-events'

// One POST to a member's endpoint, which is to say to a stranger's server chosen by a
// stranger. The host is resolved once, EVERY address it has is checked (a name with one
// public and one private address is refused, not tried on the public one), and the socket
// connects to exactly the addresses checked: the lookup below is the connection's own, so a
// second resolution that a DNS-rebinding name could answer differently never happens.
// TLS still verifies the certificate against the host name. Redirects are not followed (a
// 3xx is a failure the member sees), the whole exchange is bounded in time, and the answer's
// body is read to a small bound and dropped.

/** Resolves a host name to every address it has. Injected in tests; dns.lookup otherwise (/etc/hosts too). */
export type Resolve = (host: string) => Promise<Array<{ address: string; family: number }>>

export const systemResolve: Resolve = (host) => dnsLookup(host, { all: true, verbatim: true })

export type PostPolicy = {
  timeoutMs: number
  allowHttp: boolean
  allowPrivate: boolean
  resolve?: Resolve | undefined
  /** Bytes of the answer read before the connection is dropped. */
  maxResponseBytes?: number | undefined
}

export type PostResult =
  | { ok: true; status: number; ms: number }
  | { ok: false; status: number | null; error: string; ms: number }

export async function safePost(
  target: string,
  headers: Record<string, string>,
  body: string,
  policy: PostPolicy,
): Promise<PostResult> {
  const started = Date.now()
  const ms = () => Date.now() - started
  let url: URL
  try {
    url = new URL(target)
  } catch {
    return { ok: false, status: null, error: 'refused: not a URL', ms: ms() }
  }
  if (url.protocol !== 'https:' && !(policy.allowHttp && url.protocol === 'http:')) {
    return { ok: false, status: null, error: `refused: ${url.protocol} is not allowed, only https:`, ms: ms() }
  }
  if (url.username || url.password) return { ok: false, status: null, error: 'refused: credentials in URL', ms: ms() }
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const resolve = policy.resolve ?? systemResolve
  // The addresses this connection may use, resolved and checked before the request starts.
  let addresses: Array<{ address: string; family: number }>
  try {
    addresses = isIP(host)
      ? [{ address: host, family: isIP(host) }]
      : await withTimeout(resolve(host), policy.timeoutMs)
  } catch (err) {
    return { ok: false, status: null, error: `DNS: ${(err as Error).message.slice(0, 200)}`, ms: ms() }
  }
  if (!addresses.length) return { ok: false, status: null, error: `DNS: ${host} has no address`, ms: ms() }
  if (!policy.allowPrivate) {
    for (const a of addresses) {
      const why = forbiddenAddress(a.address)
      if (why) return { ok: false, status: null, error: `refused: ${host} resolves to ${why}`, ms: ms() }
    }
  }
  const pinned: LookupFunction = (_hostname, options, callback) => {
    // Node asks for all addresses when it races IPv4 and IPv6 (autoSelectFamily), else one.
    if (options.all) callback(null, addresses)
    else callback(null, addresses[0]!.address, addresses[0]!.family)
  }
  const max = policy.maxResponseBytes ?? 64 * 1024
  return new Promise<PostResult>((resolvePost) => {
    let settled = false
    const done = (r: PostResult) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolvePost(r)
    }
    const lib = url.protocol === 'https:' ? https : http
    const req = lib.request(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        lookup: pinned,
        // A fresh connection each time: a kept-alive socket would skip the lookup and its check.
        agent: false,
        // IP literals skip `lookup`; they were checked above.
        ...(isIP(host) ? {} : { servername: host }),
      },
      (res) => {
        const status = res.statusCode ?? 0
        let read = 0
        res.on('data', (chunk: Buffer) => {
          read += chunk.length
          // Nothing of it is kept; past the bound the rest is not worth the time.
          if (read > max) res.destroy()
        })
        const finish = () =>
          done(
            status >= 200 && status < 300
              ? { ok: true, status, ms: ms() }
              : {
                  ok: false,
                  status,
                  error:
                    status >= 300 && status < 400
                      ? `HTTP ${status}: redirects are not followed`
                      : `HTTP ${status} ${(res.statusMessage ?? '').slice(0, 100)}`.trim(),
                  ms: ms(),
                },
          )
        res.on('end', finish)
        res.on('close', finish)
        res.on('error', finish)
      },
    )
    const timer = setTimeout(() => {
      req.destroy()
      done({ ok: false, status: null, error: `timeout after ${policy.timeoutMs} ms`, ms: ms() })
    }, policy.timeoutMs)
    req.on('error', (err: NodeJS.ErrnoException) =>
      done({ ok: false, status: null, error: `${err.code ?? 'error'}: ${err.message.slice(0, 200)}`, ms: ms() }),
    )
    req.end(body)
  })
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}
