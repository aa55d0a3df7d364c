// A lenient header-block reader for the places mailparser does not reach: the fields of
// message/delivery-status and message/feedback-report parts, and the headers of a returned
// message/rfc822 or text/rfc822-headers part (which may be cut short anywhere).

/** Lower-case header name → values in order of appearance, each unfolded. */
export type HeaderMap = Map<string, string[]>

const MAX_HEADER_LINES = 5000

/** The header block of `text` (up to the first empty line) and what follows it. */
export function splitHeaderBlock(text: string): { head: string; body: string } {
  const s = text.replace(/^\n+/, '')
  const end = s.indexOf('\n\n')
  return end < 0 ? { head: s, body: '' } : { head: s.slice(0, end), body: s.slice(end + 2) }
}

/** Reads `Name: value` lines, joining continuation lines; stray lines are skipped, never fatal. */
export function parseHeaderLines(head: string): HeaderMap {
  const map: HeaderMap = new Map()
  let name = ''
  let value = ''
  const flush = () => {
    if (!name) return
    const list = map.get(name)
    const v = value.replace(/\s+/g, ' ').trim()
    if (list) list.push(v)
    else map.set(name, [v])
    name = ''
  }
  const lines = head.split('\n', MAX_HEADER_LINES)
  for (const line of lines) {
    if (/^[ \t]/.test(line)) {
      if (name) value += ` ${line.trim()}`
      continue
    }
    flush()
    const m = /^([!-9;-~]+)[ \t]*:(.*)$/.exec(line)
    if (m) {
      name = m[1]!.toLowerCase()
      value = m[2]!
    }
  }
  flush()
  return map
}

/** Headers of a message or part: everything before its first empty line. */
export function parseHeaders(text: string): HeaderMap {
  return parseHeaderLines(splitHeaderBlock(text).head)
}

export function firstHeader(h: HeaderMap, name: string): string {
  return h.get(name)?.[0] ?? ''
}

export function headerRecord(h: HeaderMap): Record<string, string[]> {
  return Object.fromEntries(h)
}

/** `type; value` fields of DSN and ARF parts (`rfc822; a@b`, `smtp; 550 …`): the value alone. */
export function stripTypePrefix(value: string): string {
  return value.replace(/^\s*[a-z0-9-]+\s*;\s*/i, '').trim()
}

/** `text` without the given character at its end (a loop: `/\.+$/` is quadratic on a run of dots). */
export function trimEnd(text: string, char: string): string {
  let end = text.length
  while (end > 0 && text[end - 1] === char) end--
  return text.slice(0, end)
}

/**
 * The address in `Name <a@b>`, `<a@b>` or `a@b`, lower-cased; '' if there is none. Linear
 * in the value: a local part without `@` lets each `<` be tried once, up to the next one,
 * and a bare address is looked for in each run of address characters once.
 */
export function addressOf(value: string): string {
  const angled = /<([^<>\s@]*@[^<>\s]*)>/.exec(value)
  if (angled) return angled[1]!.toLowerCase()
  for (const run of value.matchAll(/[^\s<>"'(),;:[\]]+/g)) {
    const token = run[0]
    const at = token.indexOf('@', 1)
    if (at > 0 && at < token.length - 1) return trimEnd(token, '.').toLowerCase()
  }
  return ''
}
