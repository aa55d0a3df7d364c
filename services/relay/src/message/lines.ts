// The line structure of a submitted message, checked while DATA streams in: every line of
// the header section ends with CRLF, no line is longer than RFC 5322's 998 octets, and no
// CR stands alone anywhere. Whatever passes here is sent exactly as it is signed, because
// nodemailer's DataStream (delivery) only rewrites bare CR and bare LF (into CRLF) and
// stuffs dots, which the receiver undoes.
//
// Why a lone CR or LF is refused in the header section: our parser and mailauth split
// fields on LF, but on delivery each lone CR or LF becomes CRLF, so the recipient's MX would
// read new header lines we never checked (`Subject: x\rFrom: ceo@other.example`).
// Why a lone CR is refused in the body too: it has no meaning in a text body (RFC 5322
// 2.3), it is the SMTP smuggling vector (`\r.\r`), and turning it into a line break would
// change the member's content where it is least expected. A bare LF in the body is
// different: scripts write it, every receiver reads it as a line end, and its meaning is not
// in doubt, so the body's bare LFs are made CRLF before signing (as Postfix's
// `smtpd_forbid_bare_newline = normalize` does), so that what is signed is what is sent.

/** RFC 5322 2.1.1: a line holds at most 998 octets, not counting its CRLF. */
export const MAX_LINE_OCTETS = 998

export class LineCheck {
  /** The first problem found, as the text of a 550 5.6.0 reply; later input is not examined. */
  problem: string | undefined
  /** True once a bare LF was seen in the body: the message needs `canonicalBody`. */
  bodyHasBareLf = false
  private line = 1
  private lineLength = 0
  /** The start of the current header line, to name the field in a refusal. */
  private lineStart = ''
  /** The field the last field line started, for a folded line's refusal. */
  private lastField: string | undefined
  private inHeader = true
  private pendingCr = false

  /** Examines the next chunk of the message as it arrives. */
  push(chunk: Buffer): void {
    let i = 0
    while (i < chunk.length && !this.problem) {
      if (this.inHeader || this.pendingCr) this.step(chunk[i++]!)
      else i = this.bodyLine(chunk, i)
    }
  }

  /**
   * The body's fast path (it may be megabytes): from `i` to the next LF in one step, with
   * native searches instead of a loop over bytes. Returns where to go on.
   */
  private bodyLine(chunk: Buffer, i: number): number {
    const nl = chunk.indexOf(0x0a, i)
    const end = nl < 0 ? chunk.length : nl
    // Searched within the line only: a body without CRs must not be scanned to its end per line.
    const at = chunk.subarray(i, end).indexOf(0x0d)
    const cr = at < 0 ? -1 : i + at
    if (cr >= 0 && cr < end - 1) {
      this.lineLength += cr - i
      this.fail('holds a bare CR (a CR not followed by LF)')
      return chunk.length
    }
    const endsInCr = cr >= 0 && cr === end - 1
    this.lineLength += end - i - (endsInCr ? 1 : 0)
    if (this.lineLength > MAX_LINE_OCTETS) {
      this.fail(`is longer than ${MAX_LINE_OCTETS} octets (RFC 5322 2.1.1)`)
      return chunk.length
    }
    if (nl < 0) {
      // The chunk ends inside a line, maybe between its CR and LF.
      this.pendingCr = endsInCr
      return chunk.length
    }
    if (!endsInCr) this.bodyHasBareLf = true
    this.endLine()
    return nl + 1
  }

  /** One byte, for the header section (small, and field names are read) and a CR at a chunk's end. */
  private step(byte: number): void {
    if (this.pendingCr) {
      this.pendingCr = false
      if (byte === 0x0a) this.endLine()
      else this.fail('holds a bare CR (a CR not followed by LF)')
      return
    }
    if (byte === 0x0d) {
      this.pendingCr = true
    } else if (byte === 0x0a) {
      if (this.inHeader) {
        this.fail('ends with a bare LF; header lines must end with CRLF')
        return
      }
      this.bodyHasBareLf = true
      this.endLine()
    } else {
      this.lineLength++
      if (this.inHeader && this.lineStart.length < 40) this.lineStart += String.fromCharCode(byte)
      if (this.lineLength > MAX_LINE_OCTETS) this.fail(`is longer than ${MAX_LINE_OCTETS} octets (RFC 5322 2.1.1)`)
    }
  }

  /** Call at the end of DATA. */
  end(): void {
    if (!this.problem && this.pendingCr) this.fail('holds a bare CR (a CR not followed by LF)')
  }

  private endLine(): void {
    if (this.inHeader) this.lastField = fieldNameOf(this.lineStart) ?? this.lastField
    if (this.inHeader && this.lineLength === 0) this.inHeader = false
    this.line++
    this.lineLength = 0
    this.lineStart = ''
  }

  private fail(what: string): void {
    if (!this.inHeader) {
      this.problem = `line ${this.line} of the message (in the body) ${what}`
      return
    }
    // A field line names its field, a folded line the field it continues.
    const own = fieldNameOf(this.lineStart)
    const folded = /^[ \t]/.test(this.lineStart) && this.lastField
    const where = own ? `, field ${own}` : folded ? `, folded line of field ${this.lastField}` : ''
    this.problem = `line ${this.line} of the message (in the header section${where}) ${what}`
  }
}

function fieldNameOf(lineStart: string): string | undefined {
  return /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/.exec(lineStart)?.[1]
}

/**
 * The body with every bare LF made CRLF, ending with CRLF unless empty (the body holds no bare
 * CR: LineCheck refused it). Delivery's DataStream would make both changes after signing.
 */
export function canonicalBody(body: Buffer): Buffer {
  const parts: Buffer[] = []
  let from = 0
  for (let nl = body.indexOf(0x0a); nl >= 0; nl = body.indexOf(0x0a, nl + 1)) {
    if (nl > 0 && body[nl - 1] === 0x0d) continue
    parts.push(body.subarray(from, nl), CRLF)
    from = nl + 1
  }
  if (body.length > 0 && body.at(-1) !== 0x0a) parts.push(body.subarray(from), CRLF)
  else if (from > 0) parts.push(body.subarray(from))
  else return body
  return Buffer.concat(parts)
}

const CRLF = Buffer.from('\r\n')
