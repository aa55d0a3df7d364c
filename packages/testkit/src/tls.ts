import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
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

/** A certificate and its key, as files and as PEM text. */
export type IssuedCertificate = { certFile: string; keyFile: string; cert: string; key: string }

export type TestCertificateAuthority = IssuedCertificate & {
  /** A certificate for `names` (subjectAltName DNS entries), signed by this CA. */
  issue(names: string[]): IssuedCertificate
}

/**
 * A throwaway CA (EC P-256, two days) for tests of verified TLS: a relay told to trust
 * `certFile` accepts the certificates it issues, as it would a public CA's for real MX and
 * MTA-STS hosts. One per test process.
 */
let ca: TestCertificateAuthority | undefined
export function testCertificateAuthority(): TestCertificateAuthority {
  if (ca) return ca
  const dir = mkdtempSync(join(tmpdir(), 'atmos-ca-'))
  const certFile = join(dir, 'ca.crt')
  const keyFile = join(dir, 'ca.key')
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2']
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      ...ec,
      '-subj',
      '/CN=Atmos Test CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  )
  let serial = 0
  const issue = (names: string[]): IssuedCertificate => {
    serial++
    const leafCert = join(dir, `leaf${serial}.crt`)
    const leafKey = join(dir, `leaf${serial}.key`)
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        ...ec,
        '-subj',
        `/CN=${names[0] ?? 'localhost'}`,
        '-CA',
        certFile,
        '-CAkey',
        keyFile,
        '-addext',
        `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
        '-addext',
        'basicConstraints=critical,CA:FALSE',
        '-addext',
        'extendedKeyUsage=serverAuth',
        '-keyout',
        leafKey,
        '-out',
        leafCert,
      ],
      { stdio: 'ignore' },
    )
    return {
      certFile: leafCert,
      keyFile: leafKey,
      cert: readFileSync(leafCert, 'utf8'),
      key: readFileSync(leafKey, 'utf8'),
    }
  }
  ca = { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), issue }
  return ca
}
