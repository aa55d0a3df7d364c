// Microsoft's enhanced status codes beyond RFC 3463 (Exchange Online and Outlook.com), as
// "Email non-delivery reports and SMTP errors in Exchange Online" lists them. Their detail
// numbers (`5.1.351`, `5.4.310`, `5.7.509`) mean one thing each, often not what the RFC
// subject says (`5.4.310` is a domain that does not exist, not a network trouble). They are
// read only when no words say why: a code-specific rule yields to the words about the address.

const EXCHANGE: Record<string, string> = {
  // Recipient not found by directory lookup (and the 3xx "directory lookup failed").
  '1.10': 'userunknown',
  '1.351': 'userunknown',
  // Sender's own account: bad outbound sender, multiple From addresses, daily limit.
  '1.8': 'rejected',
  '1.20': 'notcompliantrfc',
  '1.90': 'speeding',
  // The recipient's per-hour receive limits.
  '2.121': 'speeding',
  '2.122': 'speeding',
  // Forwarding misconfigured, journaling to the cloud refused.
  '2.14': 'systemerror',
  '3.190': 'policyviolation',
  // Routing loop, hop count.
  '4.14': 'networkerror',
  // Message expired in the queue; its last attempt refused or timed out.
  '4.300': 'expired',
  '4.316': 'expired',
  '4.317': 'expired',
  '4.318': 'expired',
  // DNS: the domain does not exist; the query failed (temporary).
  '4.310': 'hostunknown',
  '4.311': 'networkerror',
  '4.312': 'networkerror',
  // Invalid characters in the message.
  '6.11': 'contenterror',
  // Not authorized to send to the group, not in its allowed senders.
  '7.12': 'rejected',
  '7.124': 'rejected',
  '7.133': 'rejected',
  '7.134': 'rejected',
  '7.135': 'rejected',
  '7.136': 'rejected',
  // Client not authenticated to send anonymous mail.
  '7.57': 'securityerror',
  // Access denied, spam abuse detected.
  '7.501': 'spamdetected',
  '7.502': 'spamdetected',
  '7.503': 'spamdetected',
  // Recipient address rejected: access denied (directory based edge blocking).
  '7.504': 'userunknown',
  '7.505': 'userunknown',
  '7.506': 'blocked',
  '7.507': 'blocked',
  '7.508': 'authfailure',
  '7.509': 'authfailure',
  '7.510': 'requireptr',
  '7.511': 'blocked',
  '7.512': 'notcompliantrfc',
  '7.513': 'blocked',
}

/** The class of one of Microsoft's own codes, or '' when `status` is none of them. */
export function reasonFromExchangeStatus(status: string): string {
  const m = /^[245]\.(\d+\.\d+)$/.exec(status)
  if (!m) return ''
  const exact = EXCHANGE[m[1]!]
  if (exact) return exact
  // 5.7.606-649: the sending IP is banned; 5.7.700-750: the sending tenant is blocked.
  const [subject, detail] = m[1]!.split('.').map(Number) as [number, number]
  if (subject === 7 && detail >= 606 && detail <= 649) return 'blocked'
  if (subject === 7 && detail >= 700 && detail <= 750) return 'blocked'
  return ''
}
