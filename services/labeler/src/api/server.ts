import type { Server as HttpServer } from 'node:http'
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
  // xrpc-server wires WebSocket upgrades for subscriptions into the app's listen().
  const http = await new Promise<HttpServer>((resolve, reject) => {
    const s = server.router.listen(port, host, () => resolve(s))
    s.once('error', reject)
  })
  return http
}

export function addressOf(http: HttpServer): string {
  const a = http.address() as AddressInfo
  return `http://${a.address}:${a.port}`
}
