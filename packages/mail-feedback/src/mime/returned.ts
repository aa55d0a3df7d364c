import { type HeaderMap, parseHeaders } from './headers.ts'
import type { ParsedMessage } from './parse.ts'

// Where the original message sits in a report: a message/rfc822 or text/rfc822-headers
// part, or (in bounces from MTAs that do not send MIME reports) appended to the text after
// a separator line. Its headers carry our attribution (X-Atmos-Ref, Feedback-ID, DKIM).

const RETURNED_TYPES = new Set([
  'message/rfc822',
  'message/global',
  'text/rfc822-headers',
  'message/rfc822-headers',
  'message/global-headers',
])

/** Lines that introduce a copy of the original message in plain-text bounces. */
const SEPARATOR = new RegExp(
  [
    String.raw`^[ \t]*[-=*_]{2}.*(original message|copy of (the |your )?(original )?message|returned message|undelivered message|message headers? follow|headers of (the |your )?(original )?message|header of the original).*$`,
    String.raw`^.*(this is a copy of the message|below this line is a copy|original (message|mail) (follows|headers? follow|as follows)|unsent message below|message text follows|the headers? of (the |your )?(original )?message (is |are )?(following|below|follows)|content-type: message\/rfc822).*$`,
  ].join('|'),
  'im',
)

export interface Returned {
  headers: HeaderMap
  /** Index in the text where the copy starts (so bounce analysis can stop there), or -1. */
  textCut: number
}

function hasMessageHeaders(h: HeaderMap): boolean {
  return ['from', 'to', 'subject', 'message-id', 'date', 'received', 'return-path'].filter((n) => h.has(n)).length >= 2
}

export function findReturned(msg: ParsedMessage): Returned {
  const cut = SEPARATOR.exec(msg.text)
  const textCut = cut ? cut.index : -1
  for (const part of msg.parts) {
    if (RETURNED_TYPES.has(part.contentType)) {
      const headers = parseHeaders(part.text)
      if (headers.size) return { headers, textCut }
    }
  }
  if (cut) {
    const after = msg.text.slice(cut.index + cut[0].length).replace(/^[\s-]*\n/, '')
    // Indented header lines (`  From: …`), line by line: a lookahead from every line start
    // rescans what follows it.
    const unindented = after
      .split('\n')
      .map((line) => (/^[ \t]+[\w-]+:/.test(line) ? line.replace(/^[ \t]+/, '') : line))
      .join('\n')
    const headers = parseHeaders(unindented)
    if (hasMessageHeaders(headers)) return { headers, textCut }
  }
  return { headers: new Map(), textCut }
}
