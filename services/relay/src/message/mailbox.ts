import { addressDomain, isSameOrSubdomain } from './addresses.ts'

// A strict reading of RFC 5322's `mailbox` (3.4), for the fields that say who a message is
// from (From, Sender, Resent-From, Resent-Sender). Lenient parsers (nodemailer's
// addressparser among them) guess at what a malformed value means, and the recipient's
// parser may guess otherwise: `x@other.example <x@member.example>` or
// `service@member.example/paypal.com` pass our domain check and are shown as another
// domain. So exactly one mailbox is accepted and nothing else:
//
//   mailbox      = [display-name] "<" addr-spec ">"  /  addr-spec      (CFWS around each part)
//   display-name = words: atoms (RFC 6532 UTF-8 allowed, "." as in obs-phrase), quoted strings,
//                  encoded words (RFC 2047)
//   addr-spec    = dot-atom "@" host name, written without any space or comment inside
//
// Refused: groups, lists, route addresses and the rest of the obsolete syntax, quoted local
// parts, address literals, a trailing dot, comments inside the address, and a display name or
// comment that is itself an address at another domain (look-alike phishing), encoded or not.

export type MailboxCheck =
  | { ok: true; address: string; domain: string; displayName: string }
  | { ok: false; status: '5.6.0' | '5.7.1'; reason: string }

// atext (RFC 5322 3.2.3) plus any non-ASCII character (RFC 6532 3.2).
const ATEXT = /[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]/u
const DOT_ATOM =
  /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+)*$/u
const HOST_LABELS = /^[\p{L}\p{M}\p{N}-]+(?:\.[\p{L}\p{M}\p{N}-]+)*$/u
const HOSTNAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/
// Controls (other than tab) and U+FFFD (bytes that were not UTF-8) have no place in these fields.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to find them
const FORBIDDEN = /[\x00-\x08\x0a-\x1f\x7f\ufffd]/u
const ENCODED_WORD = /=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=/g

class Refusal extends Error {
  readonly status: '5.6.0' | '5.7.1'
  constructor(status: '5.6.0' | '5.7.1', reason: string) {
    super(reason)
    this.status = status
  }
}

/**
 * Reads a field's unfolded value as exactly one mailbox whose domain is `memberDomain` or a
 * subdomain of it; `fieldName` names the field in the reasons.
 */
export function checkMailbox(value: string, fieldName: string, memberDomain: string): MailboxCheck {
  try {
    if (FORBIDDEN.test(value)) throw new Refusal('5.6.0', 'holds control characters or bytes that are not UTF-8')
    const parsed = new MailboxParser(value, memberDomain).mailbox()
    const domain = addressDomain(parsed.address)
    if (!isSameOrSubdomain(domain, memberDomain)) {
      throw new Refusal('5.7.1', `must be an address at ${memberDomain} or a subdomain of it, not ${domain}`)
    }
    for (const text of [parsed.displayName, ...parsed.comments]) {
      const foreign = foreignAddressIn(text, memberDomain)
      if (foreign) {
        throw new Refusal(
          '5.7.1',
          `shows the address ${foreign} in its display name or a comment; only addresses at ${memberDomain} may appear there`,
        )
      }
    }
    return { ok: true, address: parsed.address, domain, displayName: parsed.displayName }
  } catch (err) {
    if (!(err instanceof Refusal)) throw err
    const reason =
      err.status === '5.6.0'
        ? `the ${fieldName} header must be exactly one mailbox (Name <local@domain> or local@domain): it ${err.message}`
        : `${fieldName} ${err.message}`
    // The reason quotes the member's text back in an SMTP reply: printable ASCII only.
    return { ok: false, status: err.status, reason: reason.replace(/[^\x20-\x7e]/g, '?') }
  }
}

/**
 * The first address-shaped text in `text` (encoded words decoded) at a domain outside
 * `memberDomain`. Found from each "@" outwards, so the cost stays linear in the text's length
 * (a pattern scanning for `x+@` from every position would be quadratic on text without "@").
 */
function foreignAddressIn(text: string, memberDomain: string): string | undefined {
  // `ceo @ other.example` reads as an address too.
  const folded = joinAroundAt(decodeEncodedWords(text).normalize('NFKC'))
  let from = 0
  for (let at = folded.indexOf('@'); at >= 0; at = folded.indexOf('@', at + 1)) {
    let left = at
    while (left > from && !NOT_IN_ADDRESS.has(folded[left - 1]!) && !/\s/u.test(folded[left - 1]!)) left--
    let right = at + 1
    while (right < folded.length && !NOT_IN_ADDRESS.has(folded[right]!) && !/\s/u.test(folded[right]!)) right++
    from = at + 1
    if (left === at || right === at + 1) continue
    const domain = addressDomain(`x@${trimEnd(folded.slice(at + 1, right), (c) => c === '.' || /\s/u.test(c))}`)
    if (!domain || !isSameOrSubdomain(domain, memberDomain)) return folded.slice(left, right)
  }
  return undefined
}

/** Characters that end an address-shaped run (besides white space). */
const NOT_IN_ADDRESS = new Set(['<', '>', '(', ')', '"', "'", '@', ',', ';', ':', '[', ']'])

/** White space on either side of each "@" removed. */
function joinAroundAt(text: string): string {
  const parts = text.split('@')
  return parts
    .map((part, i) => {
      let p = part
      if (i > 0) p = p.trimStart()
      if (i < parts.length - 1) p = p.trimEnd()
      return p
    })
    .join('@')
}

/** `text` without the characters at its end that `strip` accepts. */
function trimEnd(text: string, strip: (c: string) => boolean): string {
  let end = text.length
  while (end > 0 && strip(text[end - 1]!)) end--
  return text.slice(0, end)
}

/** Spaces and tabs off both ends (String.trim would take other white space too). */
function trimSpaceAndTab(text: string): string {
  const blank = (c: string) => c === ' ' || c === '\t'
  let start = 0
  while (start < text.length && blank(text[start]!)) start++
  return trimEnd(text.slice(start), blank)
}

/**
 * RFC 2047 encoded words decoded wherever they stand (some readers decode them inside quoted
 * strings too, so the check does). A charset TextDecoder does not know is refused: it could
 * hide anything (UTF-7 hides "@").
 */
export function decodeEncodedWords(text: string): string {
  return text.replace(ENCODED_WORD, (_all, charset: string, encoding: string, payload: string) => {
    let bytes: Buffer
    if (encoding.toLowerCase() === 'b') {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(payload)) throw new Refusal('5.6.0', 'holds a malformed encoded word')
      bytes = Buffer.from(payload, 'base64')
    } else {
      bytes = Buffer.from(
        payload
          .replace(/_/g, ' ')
          .replace(/=([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
        'latin1',
      )
    }
    let decode: (b: Buffer) => string
    try {
      const decoder = new TextDecoder(charset.toLowerCase(), { fatal: true })
      decode = (b) => decoder.decode(b)
    } catch {
      throw new Refusal('5.6.0', `holds an encoded word in an unknown charset (${charset})`)
    }
    try {
      return decode(bytes)
    } catch {
      throw new Refusal('5.6.0', `holds an encoded word that is not valid ${charset}`)
    }
  })
}

type Parsed = { address: string; displayName: string; comments: string[] }

class MailboxParser {
  private pos = 0
  private readonly comments: string[] = []
  private readonly s: string
  private readonly memberDomain: string

  constructor(s: string, memberDomain: string) {
    this.s = s
    this.memberDomain = memberDomain
  }

  mailbox(): Parsed {
    this.cfws()
    if (this.pos >= this.s.length) throw new Refusal('5.6.0', 'is empty')
    // Either `addr-spec` or `[display-name] <addr-spec>`: read the words up to `<` or the end.
    const start = this.pos
    const words: string[] = []
    let sawQuoted = false
    // Where the last word ended: what follows it can only be white space and comments.
    let wordsEnd = start
    while (this.pos < this.s.length && this.peek() !== '<') {
      if (this.peek() === '"') {
        words.push(this.quotedString())
        sawQuoted = true
        wordsEnd = this.pos
      } else if (ATEXT.test(this.peek()) || this.peek() === '.') {
        words.push(this.word())
        wordsEnd = this.pos
      } else {
        const c = this.peek()
        throw new Refusal(
          '5.6.0',
          c === ',' || c === ';'
            ? 'names more than one address'
            : c === ':'
              ? 'is a group or a route, not a mailbox'
              : c === '@'
                ? 'has a misplaced "@"'
                : `holds an unexpected ${JSON.stringify(c)}`,
        )
      }
      this.cfws()
    }
    if (this.pos >= this.s.length) {
      // No angle brackets: the whole value must be one addr-spec, written in one piece.
      const raw = this.s.slice(start, wordsEnd)
      if (sawQuoted || words.length !== 1 || raw !== words[0]) {
        throw new Refusal('5.6.0', 'has text beside its address; write Name <local@domain>')
      }
      return { address: addrSpec(words[0]!), displayName: '', comments: this.comments }
    }
    const displayName = words.join(' ')
    if (!sawQuoted && displayName.includes('@')) {
      // `x@other.example <x@member.example>`: readers disagree on which one is the sender.
      const foreign = foreignAddressIn(displayName, this.memberDomain)
      if (foreign) throw new Refusal('5.7.1', `shows the address ${foreign} before its own address`)
      throw new Refusal('5.6.0', 'has an address before its <address>; a display name with "@" must be quoted')
    }
    this.pos++ // <
    const close = this.s.indexOf('>', this.pos)
    if (close < 0) throw new Refusal('5.6.0', 'has a "<" without its ">"')
    const address = addrSpec(trimSpaceAndTab(this.s.slice(this.pos, close)))
    this.pos = close + 1
    this.cfws()
    if (this.pos < this.s.length) {
      throw new Refusal('5.6.0', this.peek() === ',' ? 'names more than one address' : 'has text after its address')
    }
    return { address, displayName, comments: this.comments }
  }

  private peek(): string {
    return this.s[this.pos]!
  }

  /** A run of atext and dots: an atom of a display name (obs-phrase allows the dots) or an addr-spec. */
  private word(): string {
    const start = this.pos
    while (this.pos < this.s.length) {
      const c = this.s.codePointAt(this.pos)!
      const ch = String.fromCodePoint(c)
      if (ATEXT.test(ch) || ch === '.') this.pos += ch.length
      else if (ch === '@' && this.pos > start) {
        // An addr-spec without brackets: its domain follows at once.
        this.pos++
        while (this.pos < this.s.length && /[^\s<>()",;:@[\]]/u.test(this.peek())) this.pos++
        if (this.peek() === '@') throw new Refusal('5.6.0', 'has more than one "@" in its address')
        if (this.peek() === '[') throw new Refusal('5.6.0', 'uses an address literal; the domain must be a host name')
      } else break
    }
    return this.s.slice(start, this.pos)
  }

  private quotedString(): string {
    this.pos++ // "
    let out = ''
    while (this.pos < this.s.length) {
      const c = this.s[this.pos++]!
      if (c === '"') return out
      if (c === '\\') {
        if (this.pos >= this.s.length) break
        out += this.s[this.pos++]
      } else out += c
    }
    throw new Refusal('5.6.0', 'has an unterminated quoted string')
  }

  /** Folding white space and comments (nested, with quoted pairs); comments are kept for the look-alike check. */
  private cfws(): void {
    for (;;) {
      while (this.pos < this.s.length && /[ \t\r\n]/.test(this.peek())) this.pos++
      if (this.peek() !== '(') return
      let depth = 0
      let text = ''
      do {
        const c = this.s[this.pos++]
        if (c === undefined) throw new Refusal('5.6.0', 'has an unterminated comment')
        if (c === '\\') text += this.s[this.pos++] ?? ''
        else if (c === '(') depth++
        else if (c === ')') depth--
        else text += c
      } while (depth > 0)
      this.comments.push(text)
    }
  }
}

/** `local@domain` exactly: a dot-atom local part, a host name, nothing else between the brackets. */
function addrSpec(spec: string): string {
  const at = spec.lastIndexOf('@')
  if (at < 0) throw new Refusal('5.6.0', 'has no "@" in its address')
  const local = spec.slice(0, at)
  const domain = spec.slice(at + 1)
  if (/^@|[:,]/.test(spec)) throw new Refusal('5.6.0', 'uses a source route (obsolete syntax)')
  if (!local) throw new Refusal('5.6.0', 'has no local part in its address')
  if (local.startsWith('"')) throw new Refusal('5.6.0', 'uses a quoted local part, which the relay does not accept')
  if (local.includes('@')) throw new Refusal('5.6.0', 'has more than one "@" in its address')
  if (!DOT_ATOM.test(local) || Buffer.byteLength(local) > 64) {
    throw new Refusal('5.6.0', `has an invalid local part ${JSON.stringify(local)}`)
  }
  if (domain.startsWith('[')) throw new Refusal('5.6.0', 'uses an address literal; the domain must be a host name')
  if (domain.endsWith('.')) throw new Refusal('5.6.0', 'has a domain ending in a dot')
  // Letters, digits and hyphens only, before any conversion: domainToASCII parses as a URL
  // host, and `member.example/paypal.com` comes back as `member.example`.
  if (!HOST_LABELS.test(domain)) {
    throw new Refusal('5.6.0', `has a domain that is not a host name: ${JSON.stringify(domain)}`)
  }
  const ascii = addressDomain(`x@${domain}`)
  if (!HOSTNAME.test(ascii))
    throw new Refusal('5.6.0', `has a domain that is not a host name: ${JSON.stringify(domain)}`)
  return `${local}@${ascii}`
}
