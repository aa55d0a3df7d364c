import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { schemas } from '@atproto/api'
import { createServer, type Server } from '@atproto/xrpc-server'

/** The com.atproto.label lexicons the endpoint serves, from @atproto/api's copy of the schemas. */
export function labelLexicons() {
  return schemas.filter((doc) => doc.id.startsWith('com.atproto.label.'))
}

export function createXrpcServer(): Server {
  return createServer(labelLexicons(), { validateResponse: false })
}

export async function listen(server: Server, host: string, port: number): Promise<HttpServer> {
  const http = createHttpServer(server.router)
  // Subscriptions are WebSocket upgrades, which Express never sees: hand each to the
  // subscription's own WebSocket server, by the NSID in the path.
  http.on('upgrade', (req, socket, head) => {
    const nsid = /^\/xrpc\/([^?]+)/.exec(req.url ?? '')?.[1]
    const sub = nsid ? server.subscriptions.get(nsid) : undefined
    if (!sub) {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n')
      return
    }
    sub.wss.handleUpgrade(req, socket, head, (ws) => sub.wss.emit('connection', ws, req))
  })
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(port, host, () => resolve())
  })
  return http
}

export function addressOf(http: HttpServer): string {
  const a = http.address() as AddressInfo
  return `http://${a.address}:${a.port}`
}
