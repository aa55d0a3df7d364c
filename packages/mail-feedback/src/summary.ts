/// <reference path="./libmime.d.ts" />
import libmime from 'libmime'
import { firstHeader, parseHeaders } from './mime/headers.ts'

export type MessageSummary = {
  /** Decoded (RFC 2047 encoded words), '' when absent. */
  subject: string
  from: string
  date: string
  messageId: string
}

/**
 * The fields a person scans a list of received mail by, from the header block alone (the
 * start of the message is enough). Header bytes are read as UTF-8 when they are valid
 * UTF-8 (SMTPUTF8 mail), else as Latin-1; encoded words are decoded either way.
 */
export function summarizeMessage(raw: Buffer): MessageSummary {
  const utf8 = new TextDecoder('utf-8', { fatal: false }).decode(raw)
  const text = utf8.includes('\ufffd') ? raw.toString('latin1') : utf8
  const h = parseHeaders(text.replace(/\r\n/g, '\n'))
  const decode = (v: string) => {
    try {
      return libmime.decodeWords(v).trim()
    } catch {
      return v
    }
  }
  return {
    subject: decode(firstHeader(h, 'subject')),
    from: decode(firstHeader(h, 'from')),
    date: firstHeader(h, 'date'),
    messageId: firstHeader(h, 'message-id'),
  }
}
