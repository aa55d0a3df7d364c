// Enhanced status codes (RFC 3463) and SMTP reply codes as they appear in DSN fields and in
// free text. Free text is full of dotted numbers (IP addresses, software versions), so a
// code only counts when nothing digit-like touches it.

const ENHANCED = /(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)/g
const REPLY_BEFORE_ENHANCED = /(?<![\d.])([45]\d\d)[ -]+#?([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)/
const REPLY = /(?:^|[\s:(["'<=]|said:)([45][0-5]\d)(?=[ \-)\]:,]|\.(?!\d)|$)/gm

/**
 * The reply codes SMTP defines (RFC 5321, 7504, 4954, 5248, 2645, 3030). Any other
 * three-digit number in a reply (`522 5.2.0 Over quota`, `426 connection timed out`) is a
 * server's own invention or a number in the prose, and says nothing a client could act on.
 */
const KNOWN_REPLY = new Set([
  '421',
  '422',
  '430',
  '432',
  '450',
  '451',
  '452',
  '453',
  '454',
  '455',
  '458',
  '459',
  '500',
  '501',
  '502',
  '503',
  '504',
  '521',
  '523',
  '524',
  '525',
  '530',
  '533',
  '534',
  '535',
  '538',
  '550',
  '551',
  '552',
  '553',
  '554',
  '555',
  '556',
  '557',
])

/** Every enhanced status code in `text`, in order of appearance. */
export function enhancedCodes(text: string): string[] {
  return [...text.matchAll(ENHANCED)].map((m) => `${m[1]}.${Number(m[2])}.${Number(m[3])}`)
}

/** How much an enhanced code says: `5.0.0` nothing beyond its class, `5.1.1` everything. */
export function specificity(code: string): number {
  const m = /^([245])\.(\d+)\.(\d+)$/.exec(code)
  if (!m) return -1
  return (m[2] !== '0' ? 1 : 0) + (m[3] !== '0' ? 1 : 0)
}

/** The reply code in `text`: the one just before an enhanced code when there is one. */
export function replyCodeIn(text: string, wantClass?: string): string {
  const paired = REPLY_BEFORE_ENHANCED.exec(text)
  if (paired && paired[1]![0] === paired[2] && KNOWN_REPLY.has(paired[1]!)) return paired[1]!
  for (const m of text.matchAll(REPLY)) {
    const code = m[1]!
    if (!KNOWN_REPLY.has(code)) continue
    if (!wantClass || code[0] === wantClass) return code
  }
  return ''
}

/**
 * The status to report: the DSN's Status field, unless a diagnostic quotes a more specific
 * code of the same class (`Status: 5.0.0` beside `550 5.4.1`). A diagnostic code of the
 * other class is ignored, since the Status says what the reporting MTA decided. Less direct
 * words (`context`: the report's prose, the local MTA's transcript lines) only fill in a
 * vaguer field; a field as specific as they are stands.
 */
export function bestStatus(statusField: string, diagnostics: string[], context: string[] = []): string {
  const field = enhancedCodes(statusField)[0] ?? ''
  for (const [i, text] of [...diagnostics, ...context].entries()) {
    const codes = enhancedCodes(text).filter((c) => !field || c[0] === field[0])
    if (!codes.length) continue
    // The first text that quotes a code is the most direct one; its most specific code
    // wins over the field when it says at least as much (the remote's own word).
    const top = codes.reduce((a, c) => (specificity(c) > specificity(a) ? c : a))
    // X.4.7 only says the queue gave up; the last attempt's own code, quoted after it
    // (`4.4.7 Message expired … <421 4.4.2 Connection timed out>`), says why.
    if (/^\d\.4\.7$/.test(top) || (/^\d\.4\.7$/.test(field) && specificity(top) < 2)) {
      const cause = codes.filter((c) => specificity(c) === 2 && !/^\d\.4\.7$/.test(c)).at(-1)
      if (cause) return cause
    }
    if (i >= diagnostics.length && field && specificity(top) <= specificity(field)) return field
    return specificity(top) >= specificity(field) && (specificity(top) > 0 || !field) ? top : field
  }
  return field
}
