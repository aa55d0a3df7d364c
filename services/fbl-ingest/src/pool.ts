import { readFileSync, statSync } from 'node:fs'
import type { VerpConfig } from '@atmos/mail-feedback'
import type { FblIngestSettings } from './config.ts'

// The pool's identity as fbl-ingest reads it back: the same token secret the relay signs
// VERP addresses and reference headers with. Read like @atmos/secrets reads it (which this
// service does not depend on): a secret others could read is refused at start, by path only.

export class SecretFileError extends Error {
  override name = 'SecretFileError'
}

export function readTokenSecret(path: string): string {
  let mode: number
  try {
    mode = statSync(path).mode & 0o777
  } catch (err) {
    throw new SecretFileError(`cannot read secret file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  if (mode & 0o077) throw new SecretFileError(`${path} is readable by others (mode ${mode.toString(8)}); chmod 600 it`)
  const secret = readFileSync(path, 'utf8').trim()
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
