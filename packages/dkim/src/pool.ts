import type { SigningKeys } from './keys.ts'
import { signMessage } from './sign.ts'

export class NoPoolKeyError extends Error {
  override name = 'NoPoolKeyError'
}

/**
 * Signs a message of the pool's own (From in the pool domain) with the pool's newest DKIM
 * key, d= the pool domain and so aligned with its From: unsigned mail from the pool domain
 * fails the pool's own DMARC. Without a pool key (`relay keys init` not run yet) it throws
 * NoPoolKeyError, naming what the signature was for.
 */
export async function signAsPool(
  keys: SigningKeys,
  poolDomain: string,
  message: Buffer,
  what: string,
): Promise<Buffer> {
  const key = await keys.pool(poolDomain)
  if (!key) throw new NoPoolKeyError(`no active DKIM key for ${poolDomain} to sign ${what}: run relay keys init`)
  return signMessage(message, [key])
}
