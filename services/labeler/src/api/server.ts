import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { schemas } from '@atproto/api'
import { createServer, type Server } from '@atproto/xrpc-server'
import { answerClientErrors } from './client-error.ts'
import type { SubscribeLabelsServer } from './subscribe-labels.ts'

/** The com.atproto.label lexicons the endpoint serves, from @atproto/api's copy of the schemas. */
export function labelLexicons() {
  return schemas.filter((doc) => doc.id.startsWith('com.atproto.label.'))
}

export function createXrpcServer(): Server {
  return createServer(labelLexicons(), { validateResponse: false })
}

/** One HTTP server: XRPC queries through xrpc-server, the label subscription on upgrade. */
export async function listen(
  server: Server,
  subscriptions: SubscribeLabelsServer,
  host: string,
  port: number,
): Promise<HttpServer> {
  const http = createHttpServer(server.router)
  answerClientErrors(http)
  subscriptions.attach(http)
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(port, host, () => resolve())
  })
  return http
}
