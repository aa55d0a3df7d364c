// TXT record data is a list of character-strings of at most 255 octets each (RFC 1035
// 3.3.14); readers join a record's strings without separators (RFC 6376 3.6.2.2, RFC 7208
// 3.3). A 2048-bit DKIM key does not fit in one, so records are split here, on octets, never
// inside a UTF-8 character.

export const MAX_STRING_OCTETS = 255

/** The character-strings of one TXT record, each at most 255 octets of UTF-8. */
export function splitTxt(value: string): string[] {
  const out: string[] = []
  let current = ''
  let octets = 0
  for (const ch of value) {
    const size = Buffer.byteLength(ch, 'utf8')
    if (octets + size > MAX_STRING_OCTETS) {
      out.push(current)
      current = ''
      octets = 0
    }
    current += ch
    octets += size
  }
  if (current || out.length === 0) out.push(current)
  return out
}

/**
 * One string as a zone file quotes it (RFC 1035 5.1): `"` and `\` escaped, octets outside
 * printable ASCII as `\DDD`, so the line survives any zone editor byte for byte.
 */
export function quoteTxtString(s: string): string {
  let out = '"'
  for (const byte of Buffer.from(s, 'utf8')) {
    if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`
    else if (byte < 0x20 || byte > 0x7e) out += `\\${String(byte).padStart(3, '0')}`
    else out += String.fromCharCode(byte)
  }
  return `${out}"`
}

/** The record data of a TXT record in zone-file form: its strings, quoted, space-separated. */
export function txtData(value: string): string {
  return splitTxt(value).map(quoteTxtString).join(' ')
}
