import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createSecretFile, readSecretFile, SecretFileError } from '@atmos/secrets'
import { JoseKey } from '@atproto/oauth-client-node'

// The confidential client's signing keys (private_key_jwt at the PDS's token endpoint):
// a JSON file `{"keys": [<private ES256 JWK>, ...]}`, mode 0600. Rotation: `admin oauth
// rotate` adds a newer key; the newest (by `iat`) signs from the next start, and every key
// in the file stays published at /oauth/jwks.json so that assertions signed a moment ago
// still verify. An OAuth session refreshes its tokens with the key it was made with
// (@atproto/oauth-client keeps its kid), so an old key leaves the file only once the sign-ins
// made with it are over (admin.session.ttl; docs/operations.md).

type PrivateJwk = Record<string, unknown> & { kid: string; iat?: number }

const KID = /^[A-Za-z0-9._-]{1,64}$/

async function newKey(now: Date): Promise<PrivateJwk> {
  const kid = `admin-${now.toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(3).toString('hex')}`
  const key = await JoseKey.generate(['ES256'], kid)
  return {
    ...(key.privateJwk as Record<string, unknown>),
    kid,
    alg: 'ES256',
    use: 'sig',
    iat: Math.floor(now.getTime() / 1000),
  }
}

/** The keys in the file, newest first; every malformed entry is an error naming its position, never its key. */
export async function loadClientKeys(path: string): Promise<JoseKey[]> {
  let parsed: { keys?: unknown }
  try {
    parsed = JSON.parse(readSecretFile(path)) as { keys?: unknown }
  } catch (err) {
    if (err instanceof SecretFileError) throw err
    throw new SecretFileError(`${path}: not JSON ({"keys": [...]}); create it with "admin oauth init"`)
  }
  const list = Array.isArray(parsed.keys) ? (parsed.keys as PrivateJwk[]) : []
  if (!list.length) throw new SecretFileError(`${path} holds no key; create it with "admin oauth init"`)
  const sorted = [...list].sort((a, b) => (b.iat ?? 0) - (a.iat ?? 0))
  const keys: JoseKey[] = []
  for (const [i, jwk] of sorted.entries()) {
    if (typeof jwk.kid !== 'string' || !KID.test(jwk.kid) || jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d) {
      throw new SecretFileError(`${path} key ${i + 1}: expected a private ES256 (P-256) JWK with a kid`)
    }
    keys.push(await JoseKey.fromJWK(jwk, jwk.kid))
  }
  return keys
}

/** Creates the keys file with one fresh key when it is missing; false when it exists already. */
export async function initClientKeys(path: string, now = new Date()): Promise<boolean> {
  return createSecretFile(path, JSON.stringify({ keys: [await newKey(now)] }, null, 2))
}

/** Adds a newer key to the file (which must exist); returns its kid. */
export async function rotateClientKeys(path: string, now = new Date()): Promise<string> {
  const parsed = JSON.parse(readSecretFile(path)) as { keys: PrivateJwk[] }
  const key = await newKey(now)
  writeFileSync(path, `${JSON.stringify({ keys: [key, ...parsed.keys] }, null, 2)}\n`, { mode: 0o600 })
  return key.kid
}
