// The header section of a submitted message, parsed into fields that keep their exact
// bytes, and the body left as the bytes it arrived as: the relay adds, removes and
// reorders header fields but never re-encodes anything, and never reads the body.

export type HeaderField = {
  /** Field name as written (`Feedback-ID`). */
  name: string
  /** Lower-case name, for lookups. */
  key: string
  /** The whole field, folded lines included, without its final line break. */
  raw: Buffer
}

export type ParsedMessage = {
  fields: HeaderField[]
  /** Everything after the empty line that ends the header section (may be empty). */
  body: Buffer
  /** The line break the message uses (`\r\n` as SMTP delivers it). */
  eol: string
}

export class MessageFormatError extends Error {
  override name = 'MessageFormatError'
}

const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/

/** Splits header section and body; a header line that is not a field is an error. */
export function parseMessage(message: Buffer): ParsedMessage {
  const { headerEnd, bodyStart, eol } = findHeaderEnd(message)
  refuseBareLineBreaks(message.subarray(0, headerEnd))
  const fields: HeaderField[] = []
  let start = 0
  while (start < headerEnd) {
    // A field runs until a line break not followed by a space or tab (folding).
    let end = start
    for (;;) {
      const nl = message.indexOf(0x0a, end)
      if (nl < 0 || nl >= headerEnd) {
        end = headerEnd
        break
      }
      const next = message[nl + 1]
      if (nl + 1 < headerEnd && (next === 0x20 || next === 0x09)) {
        end = nl + 1
        continue
      }
      end = nl
      break
    }
    let raw = message.subarray(start, end)
    if (raw.at(-1) === 0x0d) raw = raw.subarray(0, -1)
    const colon = raw.indexOf(0x3a)
    const name = colon > 0 ? raw.subarray(0, colon).toString('latin1').trimEnd() : ''
    if (!FIELD_NAME.test(name)) {
      throw new MessageFormatError(`header line ${fields.length + 1} is not a header field`)
    }
    fields.push({ name, key: name.toLowerCase(), raw })
    start = end + 1
  }
  return { fields, body: message.subarray(bodyStart), eol }
}

/**
 * A CR or LF on its own in the header section is refused: this parser (and mailauth) splits
 * fields on LF, but delivery turns each lone one into CRLF, so the recipient would read
 * header lines that were never checked. The submission's LineCheck refuses them while DATA
 * streams in; this keeps the parser safe on its own.
 */
function refuseBareLineBreaks(header: Buffer): void {
  let line = 1
  for (let i = 0; i < header.length; i++) {
    const byte = header[i]
    if (byte === 0x0d && header[i + 1] !== 0x0a) {
      throw new MessageFormatError(`header line ${line} holds a bare CR (a CR not followed by LF)`)
    }
    if (byte === 0x0a) {
      if (header[i - 1] !== 0x0d) throw new MessageFormatError(`header line ${line} ends with a bare LF`)
      line++
    }
  }
}

function findHeaderEnd(message: Buffer): { headerEnd: number; bodyStart: number; eol: string } {
  const crlf = message.indexOf('\r\n\r\n')
  const lf = message.indexOf('\n\n')
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return { headerEnd: crlf + 2, bodyStart: crlf + 4, eol: '\r\n' }
  if (lf >= 0) return { headerEnd: lf + 1, bodyStart: lf + 2, eol: '\n' }
  // No body at all: the whole message is the header section.
  return { headerEnd: message.length, bodyStart: message.length, eol: message.includes('\r\n') ? '\r\n' : '\n' }
}

/** The unfolded value of a field (after the colon), as a string. */
export function fieldValue(field: HeaderField): string {
  const colon = field.raw.indexOf(0x3a)
  return field.raw
    .subarray(colon + 1)
    .toString('utf8')
    .replace(/\r?\n(?=[ \t])/g, '')
    .trim()
}

/** Builds one header field; refuses values that would smuggle in another line. */
export function makeField(name: string, value: string): HeaderField {
  if (!FIELD_NAME.test(name)) throw new Error(`invalid header name ${JSON.stringify(name)}`)
  if (/[\r\n]/.test(value)) throw new Error(`header ${name} value contains a line break`)
  return { name, key: name.toLowerCase(), raw: Buffer.from(`${name}: ${value}`, 'utf8') }
}

/** The message again: fields in order, each ended with the message's own line break, then the body. */
export function serializeMessage(fields: HeaderField[], body: Buffer, eol: string): Buffer {
  const parts: Buffer[] = []
  const brk = Buffer.from(eol)
  for (const f of fields) parts.push(f.raw, brk)
  parts.push(brk, body)
  return Buffer.concat(parts)
}
