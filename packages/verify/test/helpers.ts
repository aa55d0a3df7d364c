import { generateKeyPairSync } from 'node:crypto'
import type { DnsRecords, DnsZone, TestDnsServer } from '@atmos/testkit'
import { createDnsResolver, type DnsResolver, type IdentityResolver } from '../src/index.ts'

export const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
export const OTHER_DID = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'

/** The p= value of a DKIM key record: the SubjectPublicKeyInfo, base64. */
export function dkimKey(type: 'rsa' | 'ed25519', bits = 2048): string {
  if (type === 'ed25519') {
    const { publicKey } = generateKeyPairSync('ed25519')
    // RFC 8463: the bare 32-byte key, not the SPKI structure.
    return publicKey.export({ type: 'spki', format: 'der' }).subarray(-32).toString('base64')
  }
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: bits })
  return publicKey.export({ type: 'spki', format: 'der' }).toString('base64')
}

export const RSA_2048 = dkimKey('rsa', 2048)

/** Everything a domain needs to pass, under `domain`, with selector `atmos1`. */
export function goodZone(domain: string, did = DID): DnsZone {
  return {
    [domain]: {
      MX: [{ priority: 10, exchange: `mx.${domain}` }],
      // Addresses only, so that a broken MX record does not also break SPF evaluation.
      TXT: ['v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:25::/48 -all', 'google-site-verification=abc'],
    },
    [`mx.${domain}`]: { A: ['198.51.100.25'], AAAA: ['2001:db8:25::25'] },
    [`atmos1._domainkey.${domain}`]: { TXT: [`v=DKIM1; k=rsa; p=${RSA_2048}`] },
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

/**
 * Short timeouts so that a silent server turns into ETIMEOUT quickly. The server shares the
 * test's event loop, so a test that makes it encode huge answers asks for a patient resolver.
 */
export function resolverFor(server: TestDnsServer, timeoutMs = 300): DnsResolver {
  return createDnsResolver({ servers: ['127.0.0.1'], port: server.port, timeoutMs, tries: 1 })
}

/** An identity resolver for tests that do not exercise the handle path. */
export function staticIdentity(docs: Record<string, string[]> = {}): IdentityResolver {
  return {
    resolveDid: async (did) => ({ id: did, alsoKnownAs: docs[did] ?? [] }),
    resolveHandleHttps: async () => undefined,
  }
}
