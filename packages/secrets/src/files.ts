import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

// Secret files (key-encryption keys, the pool's token secret) are read only when their
// owner alone may read them, as the labeler does for its signing key: a key that others
// could have copied is no longer a secret, and refusing to start says so early.

export class SecretFileError extends Error {
  override name = 'SecretFileError'
}

/** The file's text, trimmed; refuses a file anyone outside its owner can read or write. */
export function readSecretFile(path: string): string {
  let mode: number
  try {
    mode = statSync(path).mode & 0o777
  } catch (err) {
    throw new SecretFileError(`cannot read secret file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  if (mode & 0o077) throw new SecretFileError(`${path} is readable by others (mode ${mode.toString(8)}); chmod 600 it`)
  return readFileSync(path, 'utf8').trim()
}

/**
 * Writes a new secret file with mode 0600 (its directory 0700); returns false, writing
 * nothing, when the file exists already: a secret is never overwritten.
 */
export function createSecretFile(path: string, content: string): boolean {
  if (existsSync(path)) return false
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  try {
    // 'wx': another process may have created it between the check and now.
    writeFileSync(path, content.endsWith('\n') ? content : `${content}\n`, { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
  chmodSync(path, 0o600)
  return true
}
