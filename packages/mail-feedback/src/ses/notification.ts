import { mailbox } from '../address/mailbox.ts'
import { addressOf, type HeaderMap } from '../mime/headers.ts'

// Amazon SES bounce and complaint notifications ("Amazon SES notification contents", SES
// Developer Guide): a JSON object with `notificationType` (or `eventType` when published as
// an event), sent to an email subscription either as it is or inside Amazon SNS's envelope,
// whose `Message` is that object written as a JSON string. JSON.parse reads in linear time;
// only an object of the documented shape counts, and every value is checked before use.

/** A notification larger than this is no SES notification (SES cuts its headers list). */
const MAX_JSON = 1024 * 1024
/** SES names at most 50 recipients a message; more are not read. */
const MAX_RECIPIENTS = 500

export interface SesRecipient {
  /** A valid address the notification names, or '' when its value is none. */
  address: string
  action: string
  status: string
  diagnosticCode: string
}

export interface SesNotification {
  type: 'bounce' | 'complaint' | 'delivery'
  /** Permanent, Transient, Undetermined (bounces only). */
  bounceType: string
  bounceSubType: string
  recipients: SesRecipient[]
  /** Recipients the notification names, counting those past the limit. */
  seen: number
  remoteMta: string
  complaintFeedbackType: string
  /**
   * `OnAccountSuppressionList` when SES did not send at all because the address is on the
   * account's suppression list: no new complaint, only the old one's consequence.
   */
  complaintSubType: string
  userAgent: string
  arrivalDate: string
  /** The original message's envelope sender (`mail.source`). */
  source: string
  /** `mail.headers`, when SES included them. */
  headers: HeaderMap
}

type Json = Record<string, unknown>

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function str(v: unknown, max = 4000): string {
  return typeof v === 'string' ? v.slice(0, max) : ''
}

function parseObject(text: string): Json | undefined {
  const t = text.trim()
  if (!t.startsWith('{') || t.length > MAX_JSON) return undefined
  try {
    const v: unknown = JSON.parse(t)
    return isObject(v) ? v : undefined
  } catch {
    return undefined
  }
}

function headersOf(mail: Json): HeaderMap {
  const map: HeaderMap = new Map()
  const list = Array.isArray(mail.headers) ? mail.headers.slice(0, 1000) : []
  for (const h of list) {
    if (!isObject(h)) continue
    const name = str(h.name, 200).toLowerCase().trim()
    if (!name) continue
    const value = str(h.value).replace(/\s+/g, ' ').trim()
    map.set(name, [...(map.get(name) ?? []), value])
  }
  return map
}

function recipientsOf(list: unknown): { recipients: SesRecipient[]; seen: number } {
  const all = Array.isArray(list) ? list : []
  const recipients = all.slice(0, MAX_RECIPIENTS).map(
    (r): SesRecipient => ({
      address: isObject(r) ? mailbox(addressOf(str(r.emailAddress, 1000))) : '',
      action: isObject(r) ? str(r.action, 40).toLowerCase() : '',
      status: isObject(r) ? str(r.status, 40) : '',
      diagnosticCode: isObject(r) ? str(r.diagnosticCode) : '',
    }),
  )
  return { recipients, seen: all.length }
}

/** The SES notification in `text` (bare, or in an SNS envelope), or undefined. */
export function parseSesNotification(text: string): SesNotification | undefined {
  let obj = parseObject(text)
  // SNS: `{"Type": "Notification", "Message": "<the notification as a string>"}`, once.
  if (obj && obj.Type === 'Notification' && typeof obj.Message === 'string') obj = parseObject(obj.Message)
  if (!obj) return undefined
  const kind = str(obj.notificationType ?? obj.eventType, 40).toLowerCase()
  const mail = isObject(obj.mail) ? obj.mail : {}
  const common = {
    bounceType: '',
    bounceSubType: '',
    remoteMta: '',
    complaintFeedbackType: '',
    complaintSubType: '',
    userAgent: '',
    arrivalDate: '',
    source: mailbox(addressOf(str(mail.source, 1000))),
    headers: headersOf(mail),
  }
  if (kind === 'bounce' && isObject(obj.bounce)) {
    const b = obj.bounce
    return {
      ...common,
      type: 'bounce',
      ...recipientsOf(b.bouncedRecipients),
      bounceType: str(b.bounceType, 40),
      bounceSubType: str(b.bounceSubType, 40),
      remoteMta: str(b.reportingMTA, 300).replace(/^[ \t]*[\w-]{1,20}[ \t]*;[ \t]*/, ''),
    }
  }
  if (kind === 'complaint' && isObject(obj.complaint)) {
    const c = obj.complaint
    return {
      ...common,
      type: 'complaint',
      ...recipientsOf(c.complainedRecipients),
      complaintFeedbackType: str(c.complaintFeedbackType, 40).toLowerCase(),
      complaintSubType: str(c.complaintSubType, 60),
      userAgent: str(c.userAgent, 300),
      arrivalDate: str(c.arrivalDate, 100),
    }
  }
  if (kind === 'delivery' && isObject(obj.delivery)) {
    const d = obj.delivery
    const list = Array.isArray(d.recipients) ? d.recipients : []
    return {
      ...common,
      type: 'delivery',
      ...recipientsOf(list.map((a: unknown) => ({ emailAddress: a, action: 'delivered', status: '2.0.0' }))),
      remoteMta: str(d.reportingMTA, 300).replace(/^[ \t]*[\w-]{1,20}[ \t]*;[ \t]*/, ''),
    }
  }
  return undefined
}

/**
 * What SES's bounceSubType says when the remote's own words do not: its documented values
 * (General and Undetermined say nothing).
 */
export function reasonFromSubType(subType: string): string {
  switch (subType.toLowerCase()) {
    case 'noemail':
      return 'userunknown'
    case 'suppressed':
    case 'onaccountsuppressionlist':
      return 'suppressed'
    case 'mailboxfull':
      return 'mailboxfull'
    case 'messagetoolarge':
      return 'mesgtoobig'
    case 'contentrejected':
    case 'attachmentrejected':
      return 'contenterror'
    default:
      return ''
  }
}
