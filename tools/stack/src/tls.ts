import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'

/**
 * A self-signed certificate for the relay's STARTTLS on a local stack, made once with the
 * openssl command line: Node reads X.509 but cannot write it, and Debian's PostgreSQL
 * (which every machine running the stack has) pulls in openssl through ssl-cert.
 * Returns false when the pair exists already.
 */
export function ensureSelfSignedCertificate(certFile: string, keyFile: string, hostname = 'localhost'): boolean {
  if (existsSync(certFile) && existsSync(keyFile)) return false
  mkdirSync(dirname(certFile), { recursive: true, mode: 0o700 })
  mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 })
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '825',
        '-subj',
        `/CN=${hostname}`,
        '-addext',
        `subjectAltName=DNS:${hostname},IP:127.0.0.1`,
        '-keyout',
        keyFile,
        '-out',
        certFile,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new Error(
      code === 'ENOENT'
        ? 'openssl is not installed (apt-get install openssl), or set ATMOS_RELAY_SUBMISSION_TLS_CERT_FILE and _KEY_FILE'
        : `openssl failed: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? (err as Error).message}`,
    )
  }
  chmodSync(keyFile, 0o600)
  return true
}
