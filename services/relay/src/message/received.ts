import { isIP } from 'node:net'
import type { HeaderField } from './headers.ts'

// The trace field the relay adds to every message it accepts (RFC 5321 4.4), signed with the
// rest. Whether it names the member's client (HELO name and address) is a setting: by default
// it does not, because the member's own network is none of the recipient's business.

export type ReceivedTrace = {
  /** The relay's submission host name. */
  by: string
  /** RFC 3848: ESMTPSA (TLS and AUTH), ESMTPA, ESMTPS or ESMTP. */
  protocol: string
  /** The copy's id (the spool's message id). */
  id: string
  /** The one envelope recipient; omitted when the message had several. */
  for?: string
  /** The member's client, when the setting says to name it. */
  client?: { helo: string; address: string }
  date: Date
}

/** `with` as RFC 3848 names a session's protocol. */
export function receivedProtocol(secure: boolean, authenticated: boolean): string {
  return `ESMTP${secure ? 'S' : ''}${authenticated ? 'A' : ''}`
}

const DOMAIN =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/** The Received field, folded before each clause so that no line nears 998 octets. */
export function receivedField(trace: ReceivedTrace): HeaderField {
  const clauses: string[] = []
  if (trace.client) {
    const literal = addressLiteral(trace.client.address)
    // The HELO name is the client's word: only a plain host name goes in, anything else is left out.
    const helo = DOMAIN.test(trace.client.helo) ? trace.client.helo : literal
    clauses.push(`from ${helo} (${literal})`)
  }
  clauses.push(`by ${DOMAIN.test(trace.by) ? trace.by : 'localhost'} with ${trace.protocol} id ${trace.id}`)
  // An SMTPUTF8 recipient would need UTF-8 in the field: `for` is optional, so it is left out.
  if (trace.for && /^[\x21-\x7e]+$/.test(trace.for)) clauses.push(`for <${trace.for}>`)
  const value = `${clauses.join('\r\n\t')};\r\n\t${rfc5322Date(trace.date)}`
  if (/[^\x20-\x7e\r\n\t]/.test(value)) throw new Error('Received field would hold characters outside ASCII')
  return { name: 'Received', key: 'received', raw: Buffer.from(`Received: ${value}`, 'latin1') }
}

function addressLiteral(address: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1]
  if (v4) return `[${v4}]`
  return isIP(address) === 6 ? `[IPv6:${address}]` : `[${address}]`
}

/** `Sun, 6 Dec 2026 19:12:56 +0000` */
export function rfc5322Date(date: Date): string {
  return date.toUTCString().replace('GMT', '+0000')
}
