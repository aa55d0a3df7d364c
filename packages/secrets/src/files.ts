import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

// Secret files (key-encryption keys, the pool's token secret, the label signing key) are
// read only when nobody else could have copied them: a key others could read is no longer
// a secret, and refusing to start says so early. The rule is PostgreSQL's for its TLS key:
// a file we own must be 0600 or less; a file root owns may also be group-readable (0640),
// which is how Kubernetes mounts Secrets for a non-root pod (owner root, group fsGroup).

export class SecretFileError extends Error {
  override name = 'SecretFileError'
}

/** Why a secret file with this owner and mode may not be trusted, or undefined when it may. */
export function secretFileProblem(
  path: string,
  stat: { mode: number; uid: number },
  euid: number | undefined = process.geteuid?.(),
): string | undefined {
  const mode = stat.mode & 0o777
  if (stat.uid === euid) {
    return mode & 0o077 ? `${path} is readable by others (mode ${mode.toString(8)}); chmod 600 it` : undefined
  }
  if (stat.uid === 0) {
    return mode & 0o137
      ? `${path} is owned by root with mode ${mode.toString(8)}: at most 640 (group-readable), or chmod 600 and own it`
      : undefined
  }
  return `${path} is owned by uid ${stat.uid}, neither this user nor root`
}

/** The file's text, trimmed; refuses a file others could have read (see secretFileProblem). */
export function readSecretFile(path: string): string {
  let stat: { mode: number; uid: number }
  try {
    stat = statSync(path)
  } catch (err) {
    throw new SecretFileError(`cannot read secret file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  const problem = secretFileProblem(path, stat)
  if (problem) throw new SecretFileError(problem)
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
