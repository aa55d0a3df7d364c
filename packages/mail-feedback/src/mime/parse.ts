import { simpleParser } from 'mailparser'
import { type HeaderMap, parseHeaders } from './headers.ts'

// Reads a raw message into what the classifiers look at: the top-level headers, the
// human-readable text, and every non-text part (delivery-status, feedback-report, the
// returned message). mailparser does the MIME work (transfer encodings, charsets, nesting);
// this module bounds the input and makes sure nothing it does can throw.

export interface MimePart {
  /** Lower-case media type: `message/delivery-status`, `message/rfc822` … */
  contentType: string
  /** Decoded part content as text (latin1 for bytes that are not UTF-8 is not attempted: reports are ASCII). */
  text: string
}

export interface ParsedMessage {
  headers: HeaderMap
  /** Lower-case top-level media type and its report-type parameter. */
  contentType: string
  reportType: string
  subject: string
  /** Human-readable text (the HTML part reduced to text when there is no plain one). */
  text: string
  parts: MimePart[]
  notes: string[]
}

const RETURNED_TYPES = new Set([
  'message/rfc822',
  'text/rfc822-headers',
  'message/rfc822-headers',
  'message/global',
  'message/global-headers',
])

export const DEFAULT_MAX_BYTES = 4 * 1024 * 1024

/** CRLF and bare-LF input must give identical answers: everything is read as LF. */
export function normalizeLineEndings(raw: Buffer): Buffer {
  if (!raw.includes(13)) return raw
  const out = Buffer.allocUnsafe(raw.length)
  let n = 0
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!
    if (b === 13 && raw[i + 1] === 10) continue
    out[n++] = b
  }
  return out.subarray(0, n)
}

/**
 * `html` without its script and style elements. In one pass: `<(script|style)[\s\S]*?<\/\1>`
 * scans to the end from every unclosed opening tag, quadratic in a page of them.
 */
function withoutScripts(html: string): string {
  // ASCII only, so that indexes in `lower` are indexes in `html`.
  const lower = html.replace(/[A-Z]+/g, (s) => s.toLowerCase())
  const unclosed = new Set<string>()
  let out = ''
  let from = 0
  for (const open of lower.matchAll(/<(script|style)/g)) {
    if (open.index < from) continue
    const name = open[1]!
    if (unclosed.has(name)) continue
    const close = lower.indexOf(`</${name}>`, open.index + name.length + 1)
    // No closing tag after this one: none after any later one either.
    if (close < 0) {
      unclosed.add(name)
      continue
    }
    out += `${html.slice(from, open.index)} `
    from = close + name.length + 3
  }
  return out + html.slice(from)
}

function htmlToText(html: string): string {
  return withoutScripts(html)
    .replace(/<br\s*\/?>|<\/(p|div|tr|li|h\d)>/gi, '\n')
    .replace(/<[^<>]+>/g, ' ')
    .replace(/&nbsp;/gi, ' ')
    .replace(/&lt;/gi, '<')
    .replace(/&gt;/gi, '>')
    .replace(/&quot;/gi, '"')
    .replace(/&amp;/gi, '&')
}

const UTF8 = new TextDecoder('utf-8', { fatal: true })

/** Report parts are meant to be ASCII; 8-bit bytes that are not UTF-8 are read as Latin-1 rather than lost. */
function decodeText(buf: Buffer): string {
  try {
    return UTF8.decode(buf)
  } catch {
    return buf.toString('latin1')
  }
}

const RETURNED_PART =
  /^content-type:[ \t]*(message\/rfc822|text\/rfc822-headers|message\/rfc822-headers|message\/global|message\/global-headers)\b.*$/im

/**
 * A returned message mailparser folded into the text (an inline message/rfc822 part): its
 * headers are read straight from the raw bytes, up to 64 KiB.
 */
function rawReturnedPart(asText: string): MimePart | undefined {
  const m = RETURNED_PART.exec(asText)
  if (!m) return undefined
  const rest = asText.slice(m.index)
  const end = rest.indexOf('\n\n')
  if (end < 0) return undefined
  return { contentType: m[1]!.toLowerCase(), text: rest.slice(end + 2, end + 2 + 65536) }
}

function rawBody(raw: Buffer): string {
  const i = raw.indexOf('\n\n')
  return i < 0 ? '' : raw.subarray(i + 2).toString('utf8')
}

/** The message as text with its top-level headers; used as-is when mailparser gives up. */
function fallback(text: string, notes: string[]): ParsedMessage {
  const headers = parseHeaders(text)
  const i = text.indexOf('\n\n')
  return {
    headers,
    contentType: '',
    reportType: '',
    subject: headers.get('subject')?.[0] ?? '',
    text: i < 0 ? '' : text.slice(i + 2),
    parts: [],
    notes,
  }
}

export async function parseMessage(input: Buffer | string, maxBytes = DEFAULT_MAX_BYTES): Promise<ParsedMessage> {
  const notes: string[] = []
  let raw = typeof input === 'string' ? Buffer.from(input, 'utf8') : input
  if (raw.length > maxBytes) {
    notes.push(`input is ${raw.length} bytes; only the first ${maxBytes} were read`)
    raw = raw.subarray(0, maxBytes)
  }
  raw = normalizeLineEndings(raw)
  const asText = raw.toString('latin1')
  const headers = parseHeaders(asText)
  let mail: Awaited<ReturnType<typeof simpleParser>>
  try {
    mail = await simpleParser(raw, {
      keepDeliveryStatus: true,
      skipHtmlToText: true,
      skipTextToHtml: true,
      skipTextLinks: true,
      skipImageLinks: true,
    })
  } catch (err) {
    notes.push(`MIME structure could not be read (${(err as Error).message}); read as plain text`)
    return fallback(asText, notes)
  }
  const ct = mail.headers.get('content-type') as { value?: string; params?: Record<string, string> } | undefined
  let text = typeof mail.text === 'string' ? mail.text : ''
  if (!text.trim() && typeof mail.html === 'string') text = htmlToText(mail.html)
  // A multipart whose boundary is missing or wrong leaves mailparser with nothing: read the
  // body as it stands.
  if (!text.trim()) text = rawBody(raw)
  const parts: MimePart[] = []
  for (const a of mail.attachments ?? []) {
    // Only the media type: a header missing its `;` (`text/plain charset=…`) reaches us whole.
    const type = /^[^\s;]*/.exec((a.contentType ?? '').toLowerCase())![0]
    const content = Buffer.isBuffer(a.content) ? a.content : Buffer.from(String(a.content ?? ''))
    const body = decodeText(normalizeLineEndings(content))
    // Some MTAs send the human-readable explanation as a second text part.
    if (type === 'text/plain' && !/^[\w-]+:/m.test(body.slice(0, 200))) text += `\n${body}`
    parts.push({ contentType: type, text: body })
  }
  if (!parts.some((p) => RETURNED_TYPES.has(p.contentType))) {
    const returned = rawReturnedPart(asText)
    if (returned) parts.push(returned)
  }
  const boundary = ct?.params?.boundary
  if (ct?.value?.startsWith('multipart/') && boundary && !asText.includes(`--${boundary}--`)) {
    notes.push('the MIME structure ends early: the message looks truncated')
  }
  return {
    headers,
    contentType: (ct?.value ?? '').toLowerCase(),
    reportType: (ct?.params?.['report-type'] ?? '').toLowerCase(),
    subject: typeof mail.subject === 'string' ? mail.subject : (headers.get('subject')?.[0] ?? ''),
    text: text.replace(/\r\n/g, '\n'),
    parts,
    notes,
  }
}
