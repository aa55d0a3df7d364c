import type { DnsRecords, DnsZone } from '@atmos/testkit'

// Records a newcomer publishes into the local DNS, as zone-file lines like the admin's wizard
// shows them (`name. IN TXT "…" "…"`, `name. 3600 IN MX 10 host.`). Every line is hostile
// input: anything but the few shapes below is refused with the reason, never half-read.

export type RecordType = 'A' | 'AAAA' | 'CNAME' | 'MX' | 'TXT'

/** One published record, in the form it is stored and listed. */
export type PublishedRecord =
  | { name: string; type: 'TXT'; strings: string[] }
  | { name: string; type: 'MX'; priority: number; exchange: string }
  | { name: string; type: 'A' | 'AAAA'; address: string }
  | { name: string; type: 'CNAME'; target: string }

/** A line that is not a record this server can publish; the message says why. */
export class ZoneLineError extends Error {
  override name = 'ZoneLineError'
}

/** Bounds on what one request and the whole zone may hold. */
export const LIMITS = { lineLength: 4096, linesPerRequest: 100, records: 2000, txtString: 255 } as const

const TYPES = new Set<string>(['A', 'AAAA', 'CNAME', 'MX', 'TXT'])
const LABEL = /^(?!-)[a-z0-9_-]{1,63}$/
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/
const IPV6 = /^[0-9a-f:.]{2,45}$/

/** A domain name in lower case without its trailing dot; throws when it is none. */
export function domainName(raw: string): string {
  const name = (raw.endsWith('.') ? raw.slice(0, -1) : raw).toLowerCase()
  if (name.length === 0 || name.length > 253) throw new ZoneLineError(`not a domain name: ${JSON.stringify(raw)}`)
  for (const label of name.split('.'))
    if (!LABEL.test(label) || label.endsWith('-'))
      throw new ZoneLineError(`not a domain name: ${JSON.stringify(raw)} (label ${JSON.stringify(label)})`)
  return name
}

/** The quoted character-strings of a TXT record's data (RFC 1035 5.1: `\"`, `\\`, `\DDD`). */
export function txtStrings(data: string): string[] {
  const out: string[] = []
  let i = 0
  while (i < data.length) {
    if (data[i] === ' ' || data[i] === '\t') {
      i++
      continue
    }
    if (data[i] !== '"') throw new ZoneLineError(`TXT data must be quoted strings ("…" "…"): ${data.slice(0, 80)}`)
    const bytes: number[] = []
    i++
    for (;;) {
      if (i >= data.length) throw new ZoneLineError('TXT string not terminated: a closing " is missing')
      const ch = data[i]!
      if (ch === '"') break
      if (ch === '\\') {
        const digits = data.slice(i + 1, i + 4)
        if (/^\d{3}$/.test(digits) && Number(digits) < 256) {
          bytes.push(Number(digits))
          i += 4
        } else if (i + 1 < data.length) {
          bytes.push(...Buffer.from(data[i + 1]!, 'utf8'))
          i += 2
        } else throw new ZoneLineError('TXT string ends in a lone backslash')
        continue
      }
      bytes.push(...Buffer.from(ch, 'utf8'))
      i++
    }
    if (bytes.length > LIMITS.txtString)
      throw new ZoneLineError(`a TXT string holds ${LIMITS.txtString} bytes at most; split it into several "…" "…"`)
    out.push(Buffer.from(bytes).toString('utf8'))
    i++
  }
  if (out.length === 0) throw new ZoneLineError('TXT record without data')
  return out
}

/**
 * One zone-file line: `name [ttl] [IN] TYPE data` (the TTL is accepted and ignored: this
 * server answers with TTL 0 so that an edit shows at once). Throws ZoneLineError.
 */
export function parseZoneLine(line: string): PublishedRecord {
  if (line.length > LIMITS.lineLength) throw new ZoneLineError(`line longer than ${LIMITS.lineLength} characters`)
  const text = line.trim()
  if (/[\r\n\0]/.test(text)) throw new ZoneLineError('one record a line')
  const fields = text.split(/[ \t]+/)
  const rawName = fields.shift() ?? ''
  if (!rawName) throw new ZoneLineError('empty line')
  const name = domainName(rawName)
  if (/^\d+$/.test(fields[0] ?? '')) fields.shift()
  if ((fields[0] ?? '').toUpperCase() === 'IN') fields.shift()
  const type = (fields.shift() ?? '').toUpperCase()
  if (!TYPES.has(type))
    throw new ZoneLineError(`record type ${JSON.stringify(type)} not served (A, AAAA, CNAME, MX or TXT): ${clip(line)}`)
  switch (type) {
    case 'TXT': {
      // The data as written, spaces inside the quotes included.
      const at = text.toUpperCase().search(/[ \t]TXT[ \t]/)
      if (at < 0) throw new ZoneLineError('TXT record without data')
      return { name, type, strings: txtStrings(text.slice(at + 5)) }
    }
    case 'MX': {
      const [priority, exchange, ...rest] = fields
      if (!priority || !exchange || rest.length || !/^\d{1,5}$/.test(priority) || Number(priority) > 65535)
        throw new ZoneLineError(`MX data is a priority (0–65535) and a host: ${clip(line)}`)
      return { name, type, priority: Number(priority), exchange: exchange === '.' ? '.' : domainName(exchange) }
    }
    case 'A':
    case 'AAAA': {
      const [address, ...rest] = fields
      const ok = type === 'A' ? IPV4.test(address ?? '') : IPV6.test(address ?? '') && address!.includes(':')
      if (!address || rest.length || !ok) throw new ZoneLineError(`${type} data is one address: ${clip(line)}`)
      return { name, type, address: address.toLowerCase() }
    }
    default: {
      const [target, ...rest] = fields
      if (!target || rest.length) throw new ZoneLineError(`CNAME data is one host: ${clip(line)}`)
      return { name, type: 'CNAME', target: domainName(target) }
    }
  }
}

/** Lines of a pasted block: blank lines and `;` comments skipped; each other line must parse. */
export function parseZoneText(text: string): PublishedRecord[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '' && !l.trim().startsWith(';'))
  if (lines.length === 0) throw new ZoneLineError('no record lines')
  if (lines.length > LIMITS.linesPerRequest)
    throw new ZoneLineError(`${lines.length} lines: at most ${LIMITS.linesPerRequest} at once`)
  return lines.map((line, i) => {
    try {
      return parseZoneLine(line)
    } catch (err) {
      if (err instanceof ZoneLineError) throw new ZoneLineError(`line ${i + 1}: ${err.message}`)
      throw err
    }
  })
}

/** The record as one zone-file line, as the page and the CLI list it. */
export function formatRecord(r: PublishedRecord): string {
  switch (r.type) {
    case 'TXT':
      return `${r.name}. IN TXT ${r.strings.map((s) => `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`).join(' ')}`
    case 'MX':
      return `${r.name}. IN MX ${r.priority} ${r.exchange === '.' ? '.' : `${r.exchange}.`}`
    case 'A':
    case 'AAAA':
      return `${r.name}. IN ${r.type} ${r.address}`
    case 'CNAME':
      return `${r.name}. IN CNAME ${r.target}.`
  }
}

export const sameRecord = (a: PublishedRecord, b: PublishedRecord) => formatRecord(a) === formatRecord(b)

/** Adds the records to a zone (each name's records gathered by type). */
export function addToZone(zone: DnsZone, records: PublishedRecord[]): DnsZone {
  for (const r of records) {
    zone[r.name] ??= {}
    const at: DnsRecords = zone[r.name]!
    if (r.type === 'TXT') at.TXT = [...(at.TXT ?? []), r.strings]
    else if (r.type === 'MX') at.MX = [...(at.MX ?? []), { priority: r.priority, exchange: r.exchange }]
    else if (r.type === 'CNAME') at.CNAME = r.target
    else at[r.type] = [...(at[r.type] ?? []), r.address]
  }
  return zone
}

function clip(line: string): string {
  return line.length > 120 ? `${line.slice(0, 120)}…` : line
}
