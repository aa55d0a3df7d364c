import type { EnrollConfig } from './config.ts'
import { controlRecord } from './control.ts'
import { splitTxt, txtData } from './txt.ts'

// Step 3 of the wizard: every DNS record the domain needs, each as a member's DNS provider
// asks for it (name, type, value) and as the exact zone-file line.

export type RecordPurpose = 'dkim' | 'spf' | 'dmarc' | 'domain_control' | 'mx'

export type DnsRecordToPublish = {
  purpose: RecordPurpose
  name: string
  type: 'TXT' | 'MX'
  /** The whole value as one string (what most providers' forms take). */
  value: string
  /** A TXT value cut into ≤ 255-octet character-strings (what the zone file holds). */
  strings?: string[]
  /** `<name>. IN TXT "…" "…"` */
  zoneLine: string
  /** False for what is offered, not required (the MX for replies). */
  required: boolean
  /** Why the record is there, one sentence. */
  note: string
}

export type DmarcPolicy = 'quarantine' | 'reject'

/** The DMARC record the wizard proposes: relaxed DKIM alignment (the pool signs too), rua only if configured. */
export function dmarcValue(policy: DmarcPolicy, rua?: string | undefined): string {
  const parts = ['v=DMARC1', `p=${policy}`, 'adkim=r']
  const address = rua?.trim().replace(/^mailto:/i, '')
  if (address) parts.push(`rua=mailto:${address}`)
  return parts.join('; ')
}

export function txtRecord(
  purpose: RecordPurpose,
  name: string,
  value: string,
  note: string,
  required = true,
): DnsRecordToPublish {
  return {
    purpose,
    name,
    type: 'TXT',
    value,
    strings: splitTxt(value),
    zoneLine: `${name}. IN TXT ${txtData(value)}`,
    required,
    note,
  }
}

export type RecordsInput = {
  did: string
  domain: string
  /** The domain's DKIM keys: selector and TXT value (`v=DKIM1; k=…; p=…`). */
  keys: Array<{ selector: string; txt: string }>
  /** The SPF record to publish (merged with the domain's existing one: spf.ts). */
  spf: string
  /** True when the account's handle is the domain: then no `_atproto` record is needed (control.ts). */
  handleProvesControl: boolean
}

/** The records to publish for a domain, in the order the wizard lists them. */
export function recordsFor(
  input: RecordsInput,
  config: Pick<EnrollConfig, 'dmarcPolicy' | 'dmarcRua' | 'mxHost'>,
): DnsRecordToPublish[] {
  const { domain } = input
  const out: DnsRecordToPublish[] = input.keys.map((k) =>
    txtRecord(
      'dkim',
      `${k.selector}._domainkey.${domain}`,
      k.txt,
      /k=ed25519/.test(k.txt)
        ? 'The Ed25519 DKIM key (RFC 8463): receivers that know it prefer it.'
        : 'The RSA DKIM key: every receiver verifies it.',
    ),
  )
  out.push(
    txtRecord(
      'spf',
      domain,
      input.spf,
      'SPF: the one SPF record of the domain, with the pool included (replace the existing SPF record, never add a second).',
    ),
  )
  out.push(
    txtRecord(
      'dmarc',
      `_dmarc.${domain}`,
      dmarcValue(config.dmarcPolicy, config.dmarcRua),
      'DMARC: receivers act on mail that fails; replace any existing record at this name.',
    ),
  )
  if (!input.handleProvesControl) {
    const r = controlRecord(input.did, domain)
    out.push(txtRecord('domain_control', r.name, r.value, 'Proves that your account controls the domain.'))
  }
  const mx = config.mxHost.trim().replace(/\.$/, '')
  if (mx) {
    out.push({
      purpose: 'mx',
      name: domain,
      type: 'MX',
      value: `10 ${mx}.`,
      zoneLine: `${domain}. IN MX 10 ${mx}.`,
      required: false,
      note: 'Optional: replies to your mail reach the pool, which forwards them (only if the domain has no mail server of its own).',
    })
  }
  return out
}
