import type { NodeOAuthClient } from '@atproto/oauth-client-node'
import { Hono } from 'hono'

/**
 * What authorization servers fetch about us: the client metadata (its URL is our
 * client_id) and the public halves of our signing keys. Served only for the confidential
 * client; the loopback client has neither.
 */
export function oauthMetadataRoutes(oauth: NodeOAuthClient): Hono {
  const app = new Hono()
  app.get('/client-metadata.json', (c) => {
    c.header('Cache-Control', 'public, max-age=300')
    return c.json(oauth.clientMetadata)
  })
  // `jwks` holds public keys only (the library drops `d`).
  app.get('/jwks.json', (c) => {
    c.header('Cache-Control', 'public, max-age=300')
    return c.json(oauth.jwks)
  })
  return app
}
