import { mailbox } from '../address/mailbox.ts'

// Recipients of a bounce from an MTA that does not send RFC 3464: the addresses the
// human-readable text names, minus the ones that are obviously not recipients (the
// sender, postmaster addresses, message ids), each with the words that follow it.

export interface PlainRecipient {
  address: string
  /** The text from the address to the next recipient (or the end of the explanation). */
  snippet: string
  /** The line before the address ("RCPT To:<"): it tells the SMTP step, not the status. */
  lead: string
  /**
   * The SMTP dialogue written just above the address's line (`While talking to …: >>> MAIL
   * From:… <<< 501 …`, as old sendmail reports it): the remote's own answer; '' when none.
   */
  session: string
}

const NOT_RECIPIENT_LOCAL =
  /^(mailer-daemon|mail-daemon|postmaster|abuse|noreply|no-reply|nobody|root-daemon|double-bounce)$/i
const MAX_RECIPIENTS = 100
const MAX_SNIPPET = 2000

/** Characters of a local part as bounces write it (RFC 5322 atext and the dot). */
const LOCAL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~.-"
const DOMAIN_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-'
const table = (chars: string) => {
  const t = new Uint8Array(128)
  for (const c of chars) t[c.charCodeAt(0)] = 1
  return t
}
const LOCAL = table(LOCAL_CHARS)
const DOMAIN = table(DOMAIN_CHARS)
const isIn = (t: Uint8Array, code: number) => code < 128 && t[code] === 1

/** `text` without leading and trailing dots and hyphens. */
function trimDotsAndHyphens(text: string): string {
  let start = 0
  let end = text.length
  while (start < end && (text[start] === '.' || text[start] === '-')) start++
  while (end > start && (text[end - 1] === '.' || text[end - 1] === '-')) end--
  return text.slice(start, end)
}

/**
 * Every `local@domain` written in `text`, in order, as valid addresses. Found from the `@`
 * outwards rather than by a regular expression tried at every position: a run of address
 * characters without `@` would make such a search quadratic. Each character is read at
 * most twice.
 */
function* addressesIn(text: string): Generator<{ address: string; index: number }> {
  let from = 0
  for (let at = text.indexOf('@'); at >= 0; at = text.indexOf('@', at + 1)) {
    let start = at
    while (start > from && isIn(LOCAL, text.charCodeAt(start - 1))) start--
    let end = at + 1
    while (end < text.length && isIn(DOMAIN, text.charCodeAt(end))) end++
    // The domain as `label(.label)+` reads it: up to an empty label, no dot at the end.
    let domain = text.slice(at + 1, end)
    const empty = domain.indexOf('..')
    if (empty >= 0) domain = domain.slice(0, empty)
    while (domain.endsWith('.')) domain = domain.slice(0, -1)
    if (start === at || !domain || domain.startsWith('.') || !domain.includes('.')) continue
    from = at + 1 + domain.length
    const address = mailbox(trimDotsAndHyphens(text.slice(start, from)))
    if (address) yield { address, index: start }
  }
}

interface Line {
  start: number
  /** A quoted header of the original: its addresses are not recipients. */
  header: boolean
  /** "Please contact postmaster@…": its addresses are advice. */
  advice: boolean
  /** Words that make a postmaster-like address advice rather than a recipient. */
  mentionsContact: boolean
}

export interface PlainRecipients {
  recipients: PlainRecipient[]
  /** Distinct addresses taken for recipients, including those past the limit. */
  seen: number
}

export function plainRecipients(text: string, exclude: Set<string>, limit = MAX_RECIPIENTS): PlainRecipients {
  const found: { address: string; index: number; lead: string; lineStart: number }[] = []
  const seen = new Set<string>()
  // An address given as the one to write to is not a recipient, wherever else it appears.
  const advice = new Set<string>()
  // Addresses come in order, so the line around each is found by moving forward, and each
  // line is judged once, however many addresses it holds.
  let line: Line | undefined
  let lineEnd = -1
  for (const m of addressesIn(text)) {
    const { address } = m
    const local = address.split('@')[0] ?? ''
    if (seen.has(address) || exclude.has(address) || advice.has(address)) continue
    if (m.index >= lineEnd || !line) {
      const start = text.lastIndexOf('\n', m.index) + 1
      lineEnd = text.indexOf('\n', m.index) >>> 0
      const words = text.slice(start, lineEnd)
      line = {
        start,
        // Quoted headers of the original, and "please contact postmaster@…" advice.
        header: /message-id|in-reply-to|references|^\s*(from|sender|reply-to|return-path|to|cc)\s*:/i.test(words),
        advice:
          /please contact|for (further )?assistance|questions|write to|send (e-?mail|mail|a message) to|ご連絡/i.test(
            words,
          ),
        mentionsContact: /contact|report|forward/i.test(words),
      }
    }
    if (line.header) continue
    if (line.advice) {
      advice.add(address)
      continue
    }
    if (NOT_RECIPIENT_LOCAL.test(local) && line.mentionsContact) continue
    // `<id@host>` right after an id keyword, or a Received-style id, is not an address.
    if (/\bid\s*<?$/i.test(text.slice(Math.max(0, m.index - 6), m.index))) continue
    seen.add(address)
    if (found.length < limit)
      found.push({ address, index: m.index, lead: text.slice(line.start, m.index), lineStart: line.start })
  }
  const sessions = found.map((f, i) => {
    const prev = found[i - 1]
    const from = prev ? text.indexOf('\n', prev.index) + 1 || f.lineStart : 0
    const between = text.slice(Math.min(from, f.lineStart), f.lineStart)
    const start = [...between.matchAll(/^[ \t]*(\.\.\. )?while talking to\b/gim)].at(-1)?.index
    if (start === undefined) return { at: f.lineStart, text: '' }
    const session = between.slice(start)
    return /^[ \t]*<<< /m.test(session) ? { at: from + start, text: session } : { at: f.lineStart, text: '' }
  })
  const recipients = found.map((f, i) => {
    const next = found[i + 1]
    // The next address's dialogue is its own, not a continuation of this one's text.
    const end = next ? Math.min(next.index, sessions[i + 1]!.at) : text.length
    return {
      address: f.address,
      lead: f.lead,
      session: sessions[i]!.text,
      snippet: text.slice(f.index, Math.max(f.index, Math.min(end, f.index + MAX_SNIPPET))),
    }
  })
  return { recipients, seen: seen.size }
}
