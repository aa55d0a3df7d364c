/**
 * Escaping for the account fragments. Every text that reaches a page or an SVG goes through
 * `esc`: domain names, replies from remote servers, Message-IDs and search input are all
 * written by strangers. Quotes are escaped too, so the same function is safe in attributes.
 */
export function esc(value: unknown): string {
  return (
    String(value ?? '')
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&#39;')
      // XML 1.0 has no way to carry these at all, escaped or not: a remote reply or a
      // Message-ID with a control character would make the SVG (and XHTML) unparsable.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: replacing them is the point
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd')
  )
}

/** An ISO time as `2026-12-06 23:04 UTC` (the account shows UTC, as the relay counts its days in UTC). */
export function utc(at: Date | null | undefined): string {
  if (!at) return ''
  return `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC`
}

/** Thousands separated the same way whatever the server's locale. */
export function count(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}
