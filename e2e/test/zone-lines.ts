import type { DnsRecords, DnsZone } from '@atmos/testkit'

// The zone-file lines a page shows (`name. IN TXT "…" "…"`, `name. IN MX 10 host.`) read
// back into records for the loopback DNS server, as a DNS provider's zone import would.

export type ZoneLine =
  | { name: string; type: 'TXT'; strings: string[] }
  | { name: string; type: 'MX'; priority: number; exchange: string }

const withoutDot = (name: string) => (name.endsWith('.') ? name.slice(0, -1) : name).toLowerCase()

/** The quoted character-strings of a TXT record's data (RFC 1035 5.1: `\"`, `\\`, `\DDD`). */
export function txtStrings(data: string): string[] {
  const out: string[] = []
  let i = 0
  while (i < data.length) {
    if (data[i] === ' ' || data[i] === '\t') {
      i++
      continue
    }
    if (data[i] !== '"') throw new Error(`TXT data is not quoted at ${i}: ${data}`)
    const bytes: number[] = []
    i++
    for (;;) {
      if (i >= data.length) throw new Error(`unterminated TXT string: ${data}`)
      const ch = data[i]!
      if (ch === '"') break
      if (ch === '\\') {
        const digits = data.slice(i + 1, i + 4)
        if (/^\d{3}$/.test(digits)) {
          bytes.push(Number(digits))
          i += 4
        } else {
          bytes.push(data.charCodeAt(i + 1))
          i += 2
        }
        continue
      }
      bytes.push(...Buffer.from(ch, 'utf8'))
      i++
    }
    out.push(Buffer.from(bytes).toString('utf8'))
    i++
  }
  return out
}

/** One zone-file line of the two kinds the wizard shows; anything else throws. */
export function parseZoneLine(line: string): ZoneLine {
  const parts = line.trim().split(' ')
  const [name, klass, type] = parts
  if (!name || klass !== 'IN') throw new Error(`not a zone-file line: ${line}`)
  const data = parts.slice(3).join(' ')
  if (type === 'TXT') return { name: withoutDot(name), type, strings: txtStrings(data) }
  if (type === 'MX') {
    const [priority, exchange] = data.split(' ')
    if (!priority || !exchange) throw new Error(`MX data incomplete: ${line}`)
    return { name: withoutDot(name), type, priority: Number(priority), exchange: withoutDot(exchange) }
  }
  throw new Error(`record type ${type} not handled: ${line}`)
}

/** The lines as a zone: each name's TXT and MX records gathered. */
export function zoneOf(lines: ZoneLine[]): DnsZone {
  const zone: DnsZone = {}
  for (const l of lines) {
    zone[l.name] ??= {}
    const at: DnsRecords = zone[l.name]!
    if (l.type === 'TXT') at.TXT = [...(at.TXT ?? []), l.strings]
    else at.MX = [...(at.MX ?? []), { priority: l.priority, exchange: l.exchange }]
  }
  return zone
}
