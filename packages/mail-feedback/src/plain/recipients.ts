// Recipients of a bounce from an MTA that does not send RFC 3464: the addresses the
// human-readable text names, minus the ones that are obviously not recipients (the
// sender, postmaster addresses, message ids), each with the words that follow it.

export interface PlainRecipient {
  address: string
  /** The text from the address to the next recipient (or the end of the explanation). */
  snippet: string
  /** The line before the address ("RCPT To:<"): it tells the SMTP step, not the status. */
  lead: string
}

const ADDRESS = /[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+/g
const NOT_RECIPIENT_LOCAL =
  /^(mailer-daemon|mail-daemon|postmaster|abuse|noreply|no-reply|nobody|root-daemon|double-bounce)$/i
const MAX_RECIPIENTS = 100
const MAX_SNIPPET = 2000

export function plainRecipients(text: string, exclude: Set<string>): PlainRecipient[] {
  const found: { address: string; index: number; lead: string }[] = []
  const seen = new Set<string>()
  for (const m of text.matchAll(ADDRESS)) {
    const address = m[0].replace(/^[.-]+|[.-]+$/g, '').toLowerCase()
    const local = address.split('@')[0] ?? ''
    if (seen.has(address) || exclude.has(address)) continue
    const lineStart = text.lastIndexOf('\n', m.index) + 1
    const line = text.slice(lineStart, text.indexOf('\n', m.index) >>> 0)
    // Quoted headers of the original, and "please contact postmaster@…" advice.
    if (/message-id|in-reply-to|references|^\s*(from|sender|reply-to|return-path|to|cc)\s*:/i.test(line)) continue
    if (
      /please contact|for (further )?assistance|questions|write to|send (e-?mail|mail|a message) to|ご連絡/i.test(line)
    )
      continue
    if (NOT_RECIPIENT_LOCAL.test(local) && /contact|report|forward/i.test(line)) continue
    // `<id@host>` right after an id keyword, or a Received-style id, is not an address.
    if (/\bid\s*<?$/i.test(text.slice(Math.max(0, m.index - 6), m.index))) continue
    seen.add(address)
    found.push({ address, index: m.index, lead: text.slice(lineStart, m.index) })
    if (found.length >= MAX_RECIPIENTS) break
  }
  return found.map((f, i) => {
    const end = found[i + 1]?.index ?? text.length
    return { address: f.address, lead: f.lead, snippet: text.slice(f.index, Math.min(end, f.index + MAX_SNIPPET)) }
  })
}
