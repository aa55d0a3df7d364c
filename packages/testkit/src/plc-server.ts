import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A PLC directory's read API on loopback, as far as DID resolution needs it:
 * `GET /<did>` answers the DID document. Handles and failure modes are set by the test.
 */
export class PlcDirectoryServer {
  readonly requests: string[] = []
  private readonly handles = new Map<string, string[]>()
  private readonly failing = new Map<string, 'unavailable' | 'invalid'>()
  private readonly server: Server

  constructor() {
    this.server = createServer((req, res) => {
      const did = decodeURIComponent((req.url ?? '/').slice(1))
      this.requests.push(did)
      const failure = this.failing.get(did)
      if (failure === 'unavailable') return res.writeHead(502).end('bad gateway')
      if (failure === 'invalid') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"id": 42}')
      const aka = this.handles.get(did)
      if (!aka) return res.writeHead(404).end('DID not registered')
      res.writeHead(200, { 'content-type': 'application/did+ld+json' })
      res.end(
        JSON.stringify({
          '@context': ['https://www.w3.org/ns/did/v1'],
          id: did,
          alsoKnownAs: aka.map((h) => `at://${h}`),
          verificationMethod: [],
          service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://pds.test' }],
        }),
      )
    })
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    return this
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  /** Registers a DID with its handles (alsoKnownAs at://…). */
  set(did: string, handles: string[]): void {
    this.handles.set(did, handles)
  }

  fail(did: string, how: 'unavailable' | 'invalid' | undefined): void {
    if (how) this.failing.set(did, how)
    else this.failing.delete(did)
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
