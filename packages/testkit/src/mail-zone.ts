import { generateKeyPairSync } from 'node:crypto'
import type { DnsRecords, DnsZone } from './dns-server.ts'

/** The p= value of a DKIM key record: the SubjectPublicKeyInfo in base64 (RFC 8463's bare key for ed25519). */
export function dkimPublicKey(type: 'rsa' | 'ed25519', bits = 2048): string {
  if (type === 'ed25519') {
    const { publicKey } = generateKeyPairSync('ed25519')
    return publicKey.export({ type: 'spki', format: 'der' }).subarray(-32).toString('base64')
  }
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: bits })
  return publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
}

let sharedRsa2048: string | undefined

/**
 * Every record a mail domain needs to pass verification, with DKIM selector `atmos1`:
 * MX with addresses, SPF -all, DKIM RSA-2048, DMARC p=reject with rua, `_atproto` TXT.
 */
export function goodMailZone(domain: string, did: string, dkimKey?: string): DnsZone {
  sharedRsa2048 ??= dkimPublicKey('rsa', 2048)
  return {
    [domain]: {
      MX: [{ priority: 10, exchange: `mx.${domain}` }],
      // Addresses only, so that a broken MX record does not also break SPF evaluation.
      TXT: ['v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:25::/48 -all', 'google-site-verification=abc'],
    },
    [`mx.${domain}`]: { A: ['198.51.100.25'], AAAA: ['2001:db8:25::25'] },
    [`atmos1._domainkey.${domain}`]: { TXT: [`v=DKIM1; k=rsa; p=${dkimKey ?? sharedRsa2048}`] },
    [`_dmarc.${domain}`]: { TXT: [`v=DMARC1; p=reject; rua=mailto:dmarc@${domain}`] },
    [`_atproto.${domain}`]: { TXT: [`did=${did}`] },
  }
}

/** Merges names into a zone, replacing (not merging) the records of a name already there. */
export function withNames(zone: DnsZone, names: Record<string, DnsRecords | undefined>): DnsZone {
  const out = { ...zone }
  for (const [name, records] of Object.entries(names)) {
    if (records) out[name] = records
    else delete out[name]
  }
  return out
}
