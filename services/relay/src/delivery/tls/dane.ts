import { createHash, X509Certificate } from 'node:crypto'
import type { DetailedPeerCertificate } from 'node:tls'
import type { TlsaRecord } from '@atmos/verify'

/**
 * DANE for SMTP (RFC 7672): TLSA records at `_25._tcp.<mx host>`, believed only when the
 * resolver authenticated them. Only DANE-TA(2) and DANE-EE(3) are usable for SMTP (section
 * 3.1.3: PKIX-TA(0) and PKIX-EE(1) are not); selectors 0 (certificate) and 1 (public key);
 * matching types 0 (exact), 1 (SHA-256) and 2 (SHA-512).
 */

export function usableTlsa(records: TlsaRecord[]): TlsaRecord[] {
  return records.filter(
    (r) => (r.usage === 2 || r.usage === 3) && (r.selector === 0 || r.selector === 1) && r.matchingType <= 2,
  )
}

/** The TLSA base name of an MX host on port 25. */
export function tlsaName(host: string): string {
  return `_25._tcp.${host.toLowerCase().replace(/\.$/, '')}`
}

function association(cert: X509Certificate, selector: number, matchingType: number): Buffer {
  const selected = selector === 0 ? cert.raw : cert.publicKey.export({ type: 'spki', format: 'der' })
  if (matchingType === 1) return createHash('sha256').update(selected).digest()
  if (matchingType === 2) return createHash('sha512').update(selected).digest()
  return selected
}

function matchesRecord(cert: X509Certificate, r: TlsaRecord): boolean {
  return association(cert, r.selector, r.matchingType).equals(r.data)
}

/** The certificates the server presented, leaf first (Node links each to its issuer; a root links to itself). */
export function presentedChain(peer: DetailedPeerCertificate): X509Certificate[] {
  const chain: X509Certificate[] = []
  const seen = new Set<string>()
  for (let c: DetailedPeerCertificate | undefined = peer; c?.raw && !seen.has(c.fingerprint256); ) {
    seen.add(c.fingerprint256)
    chain.push(new X509Certificate(c.raw))
    c = c.issuerCertificate
  }
  return chain
}

/**
 * Whether the presented chain satisfies the records. DANE-EE: the leaf matches; its names
 * and dates do not matter (section 3.1.1). DANE-TA: a certificate of the chain matches and
 * the leaf chains to it by signature, is current, and names the MX host or the recipient
 * domain (section 3.2.2).
 */
export function daneVerify(
  chain: X509Certificate[],
  records: TlsaRecord[],
  names: string[],
  now = new Date(),
): { ok: true; usage: number } | { ok: false; reason: string } {
  const leaf = chain[0]
  if (!leaf) return { ok: false, reason: 'the server presented no certificate' }
  if (records.some((r) => r.usage === 3 && matchesRecord(leaf, r))) return { ok: true, usage: 3 }
  const ta = records.filter((r) => r.usage === 2)
  for (let i = 0; i < chain.length && ta.length; i++) {
    const anchor = chain[i]
    if (!anchor || !ta.some((r) => matchesRecord(anchor, r))) continue
    let signed = true
    for (let j = 0; j < i; j++) {
      const child = chain[j]
      const parent = chain[j + 1]
      if (!child || !parent || !child.checkIssued(parent) || !child.verify(parent.publicKey)) signed = false
    }
    if (!signed) return { ok: false, reason: 'the chain does not lead to the DANE-TA trust anchor' }
    if (new Date(leaf.validFrom) > now || new Date(leaf.validTo) < now) {
      return { ok: false, reason: 'the certificate is not current' }
    }
    if (!names.some((n) => leaf.checkHost(n) !== undefined)) {
      return { ok: false, reason: `the certificate names none of ${names.join(', ')}` }
    }
    return { ok: true, usage: 2 }
  }
  return { ok: false, reason: 'no TLSA record matches the certificate' }
}
