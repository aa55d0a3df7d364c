import { firstHeader, type HeaderMap, parseHeaderLines, stripTypePrefix } from '../mime/headers.ts'

// The machine-readable part of an RFC 3464 report: one per-message block (Reporting-MTA …)
// and one block per recipient. Real MTAs leave out the blank line between blocks, repeat
// fields, or put per-recipient fields in the per-message block; all of that is accepted.

export interface DsnRecipientFields {
  address: string
  action: string
  status: string
  diagnostic: string
  /** The Diagnostic-Code's type, lower-case (`smtp`, `x-unix`), or ''. */
  diagnosticType: string
  remoteMta: string
}

/** Bounds the work on a hostile report; no real DSN names this many recipients. */
const MAX_RECIPIENTS = 500
const RECIPIENT_FIELD = /^(final-recipient|original-recipient|x-actual-recipient)\s*:/i
/** True when `text` looks like delivery-status fields (some MTAs send them as text/plain). */
export function looksLikeDeliveryStatus(text: string): boolean {
  return /^(final-recipient|original-recipient)\s*:/im.test(text) && /^(action|status)\s*:/im.test(text)
}

function cleanAddress(value: string): string {
  return stripTypePrefix(value).replace(/^<|>$/g, '').trim().toLowerCase()
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
    cleanAddress(firstHeader(h, 'final-recipient')) ||
    cleanAddress(firstHeader(h, 'original-recipient')) ||
    cleanAddress(firstHeader(h, 'x-actual-recipient'))
  return {
    address: /@/.test(address) ? address : address.replace(/\s.*$/, ''),
    action: firstHeader(h, 'action').toLowerCase().replace(/\s.*$/, ''),
    status: firstHeader(h, 'status') || firstHeader(perMessage, 'status'),
    diagnostic: (h.get('diagnostic-code') ?? perMessage.get('diagnostic-code') ?? []).map(stripTypePrefix).join(' '),
    diagnosticType:
      /^\s*([\w-]+)\s*;/
        .exec(firstHeader(h, 'diagnostic-code') || firstHeader(perMessage, 'diagnostic-code'))?.[1]
        ?.toLowerCase() ?? '',
    remoteMta: stripTypePrefix(firstHeader(h, 'remote-mta') || firstHeader(perMessage, 'remote-mta')),
  }
}

export function parseDeliveryStatus(text: string): { perMessage: HeaderMap; recipients: DsnRecipientFields[] } {
  const all = blocks(text.replace(/\r\n/g, '\n')).map((b) => ({ b, h: parseHeaderLines(b) }))
  const perMessage = all.find((x) => !x.b.split('\n').some((l) => RECIPIENT_FIELD.test(l)))?.h ?? new Map()
  const recipients: DsnRecipientFields[] = []
  for (const { b, h } of all) {
    if (!b.split('\n').some((l) => RECIPIENT_FIELD.test(l))) continue
    // Prose that happens to mention a field name is not a recipient block.
    if (!b.split('\n').every((l) => /^[ \t]/.test(l) || /^[\w-]+\s*:/.test(l))) continue
    recipients.push(recipientOf(h, perMessage))
    if (recipients.length >= MAX_RECIPIENTS) break
  }
  return { perMessage, recipients }
}
