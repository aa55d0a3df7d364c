import { mailbox } from '../address/mailbox.ts'
import { firstHeader, type HeaderMap, parseHeaderLines, stripTypePrefix } from '../mime/headers.ts'

// The machine-readable part of an RFC 3464 report: one per-message block (Reporting-MTA …)
// and one block per recipient. Real MTAs leave out the blank line between blocks, repeat
// fields, or put per-recipient fields in the per-message block; all of that is accepted.

export interface DsnRecipientFields {
  /** A valid address, or '' when the fields name none (or only garbage). */
  address: string
  /** The Final-Recipient as written, type stripped: to find the words about it in the prose. */
  written: string
  action: string
  status: string
  diagnostic: string
  /** The Diagnostic-Code's type, lower-case (`smtp`, `x-unix`), or ''. */
  diagnosticType: string
  remoteMta: string
}

/** Bounds the work on a hostile report; no real DSN names this many recipients. */
const MAX_RECIPIENTS = 500
/** A real Diagnostic-Code is a line or a few; a longer one is read only this far. */
const MAX_DIAGNOSTIC = 4000
const RECIPIENT_FIELD = /^(final-recipient|original-recipient|x-actual-recipient)\s*:/i
/** True when `text` looks like delivery-status fields (some MTAs send them as text/plain). */
export function looksLikeDeliveryStatus(text: string): boolean {
  return /^(final-recipient|original-recipient)\s*:/im.test(text) && /^(action|status)\s*:/im.test(text)
}

/** The address of an `rfc822; a@b` field, or '' when the value is anything but one address. */
function addressField(value: string): string {
  const unbracketed = (v: string) => v.replace(/^<|>$/g, '').trim()
  // A type some MTA misspelled (`rfc/822;a@b`) still ends at its semicolon.
  return mailbox(unbracketed(stripTypePrefix(value))) || mailbox(unbracketed(value.slice(value.lastIndexOf(';') + 1)))
}

/** The first word of a field (`failed (permanent)` → `failed`). */
function firstWord(value: string): string {
  return value.trim().split(/\s/, 1)[0] ?? ''
}

/** Splits the fields into blocks: at blank lines, and before a recipient field that follows another block's fields. */
function blocks(text: string): string[] {
  const out: string[] = []
  let current: string[] = []
  let sawRecipient = false
  const push = () => {
    if (current.some((l) => l.trim())) out.push(current.join('\n'))
    current = []
    sawRecipient = false
  }
  for (const line of text.split('\n')) {
    if (!line.trim()) {
      push()
      continue
    }
    if (/^final-recipient\s*:/i.test(line) && sawRecipient) push()
    if (/^final-recipient\s*:/i.test(line)) sawRecipient = true
    current.push(line)
  }
  push()
  return out
}

function recipientOf(h: HeaderMap, perMessage: HeaderMap): DsnRecipientFields {
  const address =
    addressField(firstHeader(h, 'final-recipient')) ||
    addressField(firstHeader(h, 'original-recipient')) ||
    addressField(firstHeader(h, 'x-actual-recipient'))
  return {
    address,
    written: stripTypePrefix(firstHeader(h, 'final-recipient')).replace(/^<|>$/g, ''),
    action: firstWord(firstHeader(h, 'action').toLowerCase()),
    status: firstHeader(h, 'status') || firstHeader(perMessage, 'status'),
    diagnostic: (h.get('diagnostic-code') ?? perMessage.get('diagnostic-code') ?? [])
      .map(stripTypePrefix)
      .join(' ')
      .slice(0, MAX_DIAGNOSTIC),
    diagnosticType:
      /^\s*([\w-]+)\s*;/
        .exec(firstHeader(h, 'diagnostic-code') || firstHeader(perMessage, 'diagnostic-code'))?.[1]
        ?.toLowerCase() ?? '',
    remoteMta: stripTypePrefix(firstHeader(h, 'remote-mta') || firstHeader(perMessage, 'remote-mta')),
  }
}

export interface DeliveryStatus {
  perMessage: HeaderMap
  recipients: DsnRecipientFields[]
  /** Recipient blocks in the report, including those past the limit. */
  seen: number
}

export function parseDeliveryStatus(text: string): DeliveryStatus {
  const all = blocks(text.replace(/\r\n/g, '\n')).map((b) => ({ b, h: parseHeaderLines(b) }))
  const perMessage = all.find((x) => !x.b.split('\n').some((l) => RECIPIENT_FIELD.test(l)))?.h ?? new Map()
  const recipients: DsnRecipientFields[] = []
  let seen = 0
  for (const { b, h } of all) {
    if (!b.split('\n').some((l) => RECIPIENT_FIELD.test(l))) continue
    // Prose that happens to mention a field name is not a recipient block.
    if (!b.split('\n').every((l) => /^[ \t]/.test(l) || /^[\w-]+\s*:/.test(l))) continue
    seen++
    if (recipients.length < MAX_RECIPIENTS) recipients.push(recipientOf(h, perMessage))
  }
  return { perMessage, recipients, seen }
}
