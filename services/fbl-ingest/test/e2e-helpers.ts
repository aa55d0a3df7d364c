import { randomBytes } from 'node:crypto'
import { Resolver } from 'node:dns/promises'
import { createTransport } from 'nodemailer'

/** The header block of a raw message (what a DSN or ARF report returns as text/rfc822-headers). */
export function headerBlock(raw: string): string {
  const end = raw.indexOf('\r\n\r\n')
  return end < 0 ? raw : raw.slice(0, end)
}

/** One header's unfolded value, or undefined. */
export function headerValue(raw: string, name: string): string | undefined {
  const unfolded = headerBlock(raw).replace(/\r\n[ \t]+/g, ' ')
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(unfolded)
  return m?.[1]?.trim()
}

/** A TXT record the relay CLI printed as a zone-file line: its owner name and character-strings. */
export function zoneTxt(output: string): { name: string; strings: string[] } {
  const [first] = zoneTxts(output)
  if (!first) throw new Error(`no TXT record in the command's output:\n${output}`)
  return first
}

/** Every zone-file TXT line of a command's output (a domain's RSA and Ed25519 keys, say), in order. */
export function zoneTxts(output: string): { name: string; strings: string[] }[] {
  return [...output.matchAll(/^(\S+)\. IN TXT (.+)$/gm)].map((m) => ({
    name: m[1]!,
    strings: [...m[2]!.matchAll(/"([^"]*)"/g)].map((s) => s[1]!),
  }))
}

/**
 * Where a domain's mail goes, asked of the test's DNS server as a sending MTA would:
 * the MX with the lowest preference, then its first IPv4 address.
 */
export async function mxAddress(dnsAddress: string, domain: string): Promise<string> {
  const resolver = new Resolver({ timeout: 1000, tries: 1 })
  resolver.setServers([dnsAddress])
  const [mx] = (await resolver.resolveMx(domain)).sort((a, b) => a.priority - b.priority)
  if (!mx) throw new Error(`${domain} has no MX`)
  const [address] = await resolver.resolve4(mx.exchange)
  if (!address) throw new Error(`${mx.exchange} has no address`)
  return address
}

/**
 * Sends raw bytes with nodemailer to a receiving MTA (no AUTH, STARTTLS if offered);
 * an empty `from` is the null sender of a bounce. Resolves to the reply to the end of DATA.
 */
export async function sendToMx(
  target: { host: string; port: number },
  envelope: { from: string; to: string[] },
  raw: string,
): Promise<string> {
  const transport = createTransport({
    host: target.host,
    port: target.port,
    secure: false,
    tls: { rejectUnauthorized: false },
    name: 'mx.recipient.example',
  })
  try {
    const info = await transport.sendMail({ envelope: { from: envelope.from || false, to: envelope.to }, raw })
    return info.response
  } finally {
    transport.close()
  }
}

/** A did:plc of the right shape: 24 base32 characters. */
export function randomPlcDid(): string {
  return `did:plc:${Array.from(randomBytes(24), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b % 32]).join('')}`
}
