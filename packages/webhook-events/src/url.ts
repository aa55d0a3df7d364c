import { isIP } from 'node:net'
import { forbiddenAddress } from './address.ts'

export const MAX_WEBHOOK_URL = 2048

export class WebhookUrlError extends Error {
  override name = 'WebhookUrlError'
}

export type UrlPolicy = {
  /** http:// too (the local network only); https otherwise. */
  allowHttp?: boolean | undefined
  /** Private and loopback addresses too (tests and the local network only). */
  allowPrivate?: boolean | undefined
}

/**
 * A member's endpoint URL as stored (WHATWG-normalised), or WebhookUrlError saying what to
 * fix: https, no user or password in it (they would sit in our database and logs), no
 * fragment, a host name or a public IP literal, at most 2,048 characters. A name is only
 * checked when the dispatcher resolves it, every time it connects.
 */
export function checkWebhookUrl(input: string, policy: UrlPolicy = {}): string {
  const text = input.trim()
  if (!text) throw new WebhookUrlError('Enter the URL of your endpoint.')
  if (text.length > MAX_WEBHOOK_URL) throw new WebhookUrlError(`A URL is at most ${MAX_WEBHOOK_URL} characters.`)
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new WebhookUrlError('Enter a full URL such as https://example.com/hooks/atmos.')
  }
  if (url.protocol !== 'https:' && !(policy.allowHttp && url.protocol === 'http:')) {
    throw new WebhookUrlError('The URL must start with https:// (webhooks are only sent over TLS).')
  }
  if (url.username || url.password) {
    throw new WebhookUrlError('Leave the user name and password out of the URL; check the signature instead.')
  }
  if (url.hash) throw new WebhookUrlError('A URL with a #fragment cannot be sent to; leave it out.')
  const host = url.hostname.replace(/^\[|\]$/g, '')
  if (!host) throw new WebhookUrlError('The URL has no host.')
  if (isIP(host)) {
    const why = policy.allowPrivate ? undefined : forbiddenAddress(host)
    if (why) throw new WebhookUrlError(`Webhooks are not sent to ${host}: it is not a public address.`)
  } else if (!policy.allowPrivate && (host === 'localhost' || host.endsWith('.localhost') || !host.includes('.'))) {
    throw new WebhookUrlError(`Webhooks are not sent to ${host}: use a public host name.`)
  }
  const out = url.toString()
  if (out.length > MAX_WEBHOOK_URL) throw new WebhookUrlError(`A URL is at most ${MAX_WEBHOOK_URL} characters.`)
  return out
}
