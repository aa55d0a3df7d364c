import { createServer, type Server } from 'node:https'

/** What the server answers for one policy domain: a policy text, or a scripted response. */
export type PolicyResponse =
  | string
  | { status?: number; body?: string; contentType?: string; location?: string; delayMs?: number }

/**
 * The HTTPS side of MTA-STS (RFC 8461) on loopback: `GET /.well-known/mta-sts.txt` on
 * `mta-sts.<domain>` answers that domain's policy. One listener serves every domain (the
 * Host header picks it), with one certificate whose names the test chooses: names missing
 * from it make a domain's policy host fail verification, as a wrong certificate would.
 */
export class MtaStsServer {
  /** Keyed by the policy domain (`example.com`, not `mta-sts.example.com`). */
  readonly policies = new Map<string, PolicyResponse>()
  /** Every request, in order: `{ host, path }`. */
  readonly requests: Array<{ host: string; path: string }> = []
  private server: Server | undefined
  private boundPort = 0
  private readonly tls: { cert: string; key: string }

  constructor(tls: { cert: string; key: string }) {
    this.tls = tls
  }

  get port(): number {
    if (!this.boundPort) throw new Error('MtaStsServer is not started')
    return this.boundPort
  }

  async start(port = 0, host = '127.0.0.1'): Promise<number> {
    const server = createServer(this.tls, (req, res) => {
      const hostHeader = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase()
      this.requests.push({ host: hostHeader, path: req.url ?? '' })
      const domain = hostHeader.replace(/^mta-sts\./, '')
      const policy = req.url === '/.well-known/mta-sts.txt' ? this.policies.get(domain) : undefined
      if (policy === undefined) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
        return
      }
      const r = typeof policy === 'string' ? { body: policy } : policy
      const answer = () => {
        res.writeHead(r.status ?? 200, {
          'content-type': r.contentType ?? 'text/plain',
          ...(r.location ? { location: r.location } : {}),
        })
        res.end(r.body ?? '')
      }
      if (r.delayMs) setTimeout(answer, r.delayMs)
      else answer()
    })
    server.on('tlsClientError', () => {})
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => resolve())
    })
    this.server = server
    const address = server.address()
    this.boundPort = typeof address === 'object' && address ? address.port : port
    return this.boundPort
  }

  async close(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (!server) return
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
