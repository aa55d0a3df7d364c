import type { VerpConfig } from '@atmos/mail-feedback'
import { readSecretFile, SecretFileError } from '@atmos/secrets'
import type { FblIngestSettings } from './config.ts'

// The pool's identity as fbl-ingest reads it back: the same token secret the relay signs
// VERP addresses and reference headers with; a secret others could read is refused at start.

export function readTokenSecret(path: string): string {
  const secret = readSecretFile(path)
  if (!secret) throw new SecretFileError(`${path} is empty`)
  return secret
}

export type PoolIdentity = {
  verp: VerpConfig
  domain: string
  feedbackSenderId: string
}

export function poolIdentity(settings: FblIngestSettings): PoolIdentity {
  const pool = settings.pool
  return {
    verp: {
      secret: readTokenSecret(pool.tokenSecretFile),
      bounceDomain: pool.bounceDomain.toLowerCase(),
      prefix: pool.verpPrefix,
    },
    domain: pool.domain.toLowerCase(),
    feedbackSenderId: pool.feedbackSenderId,
  }
}
