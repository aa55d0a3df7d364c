import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

let cert: { certFile: string; keyFile: string } | undefined

/**
 * A self-signed certificate for loopback TLS (STARTTLS on the relay and fbl-ingest), made
 * once per test process with the openssl command line: Node reads X.509 but cannot write it.
 */
export function testCertificate(): { certFile: string; keyFile: string } {
  if (cert) return cert
  const dir = mkdtempSync(join(tmpdir(), 'atmos-tls-'))
  const certFile = join(dir, 'tls.crt')
  const keyFile = join(dir, 'tls.key')
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  )
  cert = { certFile, keyFile }
  return cert
}
