import { generateKeyPairSync } from 'node:crypto'
import { TestDnsServer } from '@atmos/testkit'
import { dkimSign } from 'mailauth'
import type { Env } from './helpers.ts'

/** A configured feedback-loop provider's domain (DKIM key and SPF for loopback), in a test zone. */
export const PROVIDER_DOMAIN = 'fbl.provider.test'
/** A domain with valid DKIM and SPF that is no configured provider: a stranger's own server. */
export const STRANGER_DOMAIN = 'stranger.example'
const SELECTOR = 'fbl1'

type Key = { privateKey: string; publicKey: string }

function rsaKey(): Key {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
  }
}

/**
 * The DNS a report's authentication is checked over: the provider's and the stranger's
 * DKIM keys and SPF records (both allow 127.0.0.1, where the tests send from), served by
 * a loopback DNS server, so that no check asks the internet.
 */
export class FeedbackProviders {
  readonly dns: TestDnsServer
  private readonly keys: Record<string, Key>

  private constructor(dns: TestDnsServer, keys: Record<string, Key>) {
    this.dns = dns
    this.keys = keys
  }

  static async start(): Promise<FeedbackProviders> {
    const keys = { [PROVIDER_DOMAIN]: rsaKey(), [STRANGER_DOMAIN]: rsaKey() }
    const zone = Object.fromEntries(
      Object.entries(keys).flatMap(([domain, key]) => [
        [domain, { TXT: ['v=spf1 ip4:127.0.0.1 -all'] }],
        // A TXT character-string holds 255 bytes at most: a 2048-bit key takes two.
        [`${SELECTOR}._domainkey.${domain}`, { TXT: [`v=DKIM1; k=rsa; p=${key.publicKey}`.match(/.{1,255}/g)!] }],
      ]),
    )
    const dns = new TestDnsServer(zone)
    await dns.start()
    return new FeedbackProviders(dns, keys)
  }

  /** fbl-ingest's settings: the test provider is the only one configured, its DNS the test zone. */
  env(): Env {
    return {
      ATMOS_FBL_INGEST_FEEDBACK_PROVIDERS: JSON.stringify([
        { name: 'testfbl', dkimDomains: [PROVIDER_DOMAIN], sendingDomains: [PROVIDER_DOMAIN] },
      ]),
      ATMOS_FBL_INGEST_DNS_SERVERS: '127.0.0.1',
      ATMOS_FBL_INGEST_DNS_PORT: String(this.dns.port),
      ATMOS_FBL_INGEST_DNS_TIMEOUT: '2s',
    }
  }

  /** The message (CRLF) with a DKIM signature of `domain` on top. */
  async sign(message: string, domain: string = PROVIDER_DOMAIN): Promise<string> {
    const crlf = message.replace(/\r?\n/g, '\r\n')
    const key = { signingDomain: domain, selector: SELECTOR, privateKey: this.keys[domain]!.privateKey }
    const { signatures, errors } = await dkimSign(crlf, {
      ...key,
      canonicalization: 'relaxed/relaxed',
      signatureData: [key],
    })
    if (!signatures) throw new Error(`not signed: ${JSON.stringify(errors)}`)
    return signatures + crlf
  }

  close(): Promise<void> {
    return this.dns.close()
  }
}
