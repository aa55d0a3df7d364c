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

const ADDRESS = /[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+/g
const NOT_RECIPIENT_LOCAL =
  /^(mailer-daemon|mail-daemon|postmaster|abuse|noreply|no-reply|nobody|root-daemon|double-bounce)$/i
const MAX_RECIPIENTS = 100
const MAX_SNIPPET = 2000

export function plainRecipients(text: string, exclude: Set<string>): PlainRecipient[] {
  const found: { address: string; index: number; lead: string; lineStart: number }[] = []
  const seen = new Set<string>()
  // An address given as the one to write to is not a recipient, wherever else it appears.
  const advice = new Set<string>()
  for (const m of text.matchAll(ADDRESS)) {
    const address = m[0].replace(/^[.-]+|[.-]+$/g, '').toLowerCase()
    const local = address.split('@')[0] ?? ''
    if (seen.has(address) || exclude.has(address) || advice.has(address)) continue
    const lineStart = text.lastIndexOf('\n', m.index) + 1
    const line = text.slice(lineStart, text.indexOf('\n', m.index) >>> 0)
    // Quoted headers of the original, and "please contact postmaster@…" advice.
    if (/message-id|in-reply-to|references|^\s*(from|sender|reply-to|return-path|to|cc)\s*:/i.test(line)) continue
    if (
      /please contact|for (further )?assistance|questions|write to|send (e-?mail|mail|a message) to|ご連絡/i.test(line)
    ) {
      advice.add(address)
      continue
    }
    if (NOT_RECIPIENT_LOCAL.test(local) && /contact|report|forward/i.test(line)) continue
    // `<id@host>` right after an id keyword, or a Received-style id, is not an address.
    if (/\bid\s*<?$/i.test(text.slice(Math.max(0, m.index - 6), m.index))) continue
    seen.add(address)
    found.push({ address, index: m.index, lead: text.slice(lineStart, m.index), lineStart })
    if (found.length >= MAX_RECIPIENTS) break
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
  return found.map((f, i) => {
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
}
