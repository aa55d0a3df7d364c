import type { Db } from '@atmos/db'
import type { Keyring } from '@atmos/secrets'
import {
  buildAtprotoLoopbackClientMetadata,
  type JoseKey,
  NodeOAuthClient,
  type OAuthClientMetadataInput,
  requestLocalLock,
} from '@atproto/oauth-client-node'
import type { AdminConfig } from '../config.ts'
import { sessionStore, stateStore } from './stores.ts'

/** Only what the enrollment wizard needs: writing the member's attestation record. */
export const OAUTH_SCOPE = 'atproto repo:email.atmos.attestation'

export const CALLBACK_PATH = '/oauth/callback'

/** Loopback http (development, tests): atproto's loopback client, no keys, no metadata to host. */
export function isLoopbackUrl(url: URL): boolean {
  return url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)
}

/** The confidential client's metadata, served at /oauth/client-metadata.json (its client_id). */
export function confidentialMetadata(publicUrl: URL): OAuthClientMetadataInput {
  const base = publicUrl.origin
  return {
    client_id: `${base}/oauth/client-metadata.json`,
    client_name: 'Atmosphere Mail',
    client_uri: base,
    redirect_uris: [`${base}${CALLBACK_PATH}`],
    scope: OAUTH_SCOPE,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    application_type: 'web',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks_uri: `${base}/oauth/jwks.json`,
    dpop_bound_access_tokens: true,
  } as OAuthClientMetadataInput
}

export function createOAuthClient(opts: {
  config: AdminConfig['admin']
  publicUrl: URL
  db: Db
  keyring: Keyring
  keys: JoseKey[]
}): NodeOAuthClient {
  const { config, publicUrl } = opts
  const loopback = isLoopbackUrl(publicUrl)
  // Redirects must name 127.0.0.1 or [::1], never "localhost", for a loopback client.
  const redirect = new URL(CALLBACK_PATH, publicUrl.origin)
  if (redirect.hostname === 'localhost') redirect.hostname = '127.0.0.1'
  const clientMetadata = loopback
    ? buildAtprotoLoopbackClientMetadata({
        scope: OAUTH_SCOPE,
        redirect_uris: [redirect.href],
      } as Parameters<typeof buildAtprotoLoopbackClientMetadata>[0])
    : confidentialMetadata(publicUrl)
  return new NodeOAuthClient({
    clientMetadata,
    ...(loopback ? {} : { keyset: opts.keys }),
    stateStore: stateStore(opts.db, opts.keyring),
    sessionStore: sessionStore(opts.db, opts.keyring),
    plcDirectoryUrl: config.oauth.plcUrl,
    ...(config.oauth.handleResolver ? { handleResolver: config.oauth.handleResolver } : {}),
    allowHttp: config.oauth.allowHttp,
    // Postgres serialises refreshes across replicas closely enough: a refresh token used twice
    // fails one of them, which then signs in again.
    requestLock: requestLocalLock,
  })
}
