import { isIP } from 'node:net'
import * as Attestation from './generated/types/email/atmos/attestation.ts'

export const ATTESTATION_COLLECTION = 'email.atmos.attestation'
/**
 * The record key every attestation had before the published lexicon (`key: any`, the
 * record key is the attested domain). Rows already stored under it stay valid and keep
 * verifying; a new write under it is refused like any key that is not its domain.
 */
export const LEGACY_ATTESTATION_RKEY = 'self'

export type AttestationRecord = Attestation.Record

export type AttestationValidation = { success: true; value: AttestationRecord } | { success: false; error: string }

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const SELECTOR = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/

/**
 * Why `domain` is not a mail domain we can verify, or null when it is one. The lexicon
 * can only bound its length; the syntax is ours: lower-case LDH labels, at least two of
 * them, a TLD that is not numeric, no IP address and no trailing dot.
 */
export function domainProblem(domain: string): string | null {
  if (isIP(domain) || /^\[.*\]$/.test(domain)) return 'must be a domain name, not an IP address'
  if (domain.endsWith('.')) return 'must not end with a dot'
  if (domain !== domain.toLowerCase()) return 'must be lower case'
  const labels = domain.split('.')
  if (labels.length < 2) return 'must be a fully-qualified domain name with at least one dot (e.g. mail.example.com)'
  const bad = labels.find((l) => !LABEL.test(l))
  if (bad !== undefined)
    return `has an invalid label "${bad.slice(0, 70)}": labels are 1-63 letters, digits or inner hyphens`
  if (/^[0-9]+$/.test(labels[labels.length - 1] as string)) return 'must not end in a numeric top-level label'
  return null
}

/** Why a DKIM selector is unusable, or null. Selectors here are single DNS labels. */
export function selectorProblem(selector: string): string | null {
  if (!SELECTOR.test(selector)) {
    return `"${selector.slice(0, 70)}" is not a single DNS label (letters, digits and inner hyphens, 1-63 characters)`
  }
  return null
}

/** Why a record stored under `rkey` cannot attest `domain` (the published rule: the key is the domain), or null. */
export function recordKeyProblem(rkey: string, domain: string): string | null {
  if (rkey === domain) return null
  return `record key "${clip(rkey)}" must be the attested domain "${clip(domain)}"`
}

const clip = (s: string) => (s.length > 253 ? `${s.slice(0, 253)}…` : s)

/**
 * Validates a record as the lexicon defines it, then the syntax the lexicon cannot
 * express. The error names the field, so a rejected record can be explained to its author.
 * With `rkey`, also the published rule that the record key is the attested domain.
 */
export function validateAttestation(value: unknown, rkey?: string): AttestationValidation {
  const typed =
    value && typeof value === 'object' && !('$type' in value) ? { $type: ATTESTATION_COLLECTION, ...value } : value
  const result = Attestation.validateRecord(typed)
  if (!result.success) return { success: false, error: result.error.message }
  const record = result.value
  const keyProblem = rkey === undefined ? null : recordKeyProblem(rkey, record.domain)
  if (keyProblem) return { success: false, error: keyProblem }
  const problem = domainProblem(record.domain)
  if (problem) return { success: false, error: `Record/domain ${problem}` }
  for (const [i, selector] of record.dkimSelectors.entries()) {
    const bad = selectorProblem(selector)
    if (bad) return { success: false, error: `Record/dkimSelectors/${i} ${bad}` }
  }
  const lowered = record.dkimSelectors.map((s) => s.toLowerCase())
  if (new Set(lowered).size !== lowered.length) {
    return { success: false, error: 'Record/dkimSelectors must not repeat a selector' }
  }
  return { success: true, value: record }
}
