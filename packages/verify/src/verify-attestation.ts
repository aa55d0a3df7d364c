import { domainProblem, selectorProblem } from '@atmos/lexicon'
import { isValidDid } from '@atproto/syntax'
import { checkDkim } from './checks/dkim.ts'
import { checkDmarc } from './checks/dmarc.ts'
import { checkDomainControl } from './checks/domain-control.ts'
import { checkMx } from './checks/mx.ts'
import { clip } from './checks/result.ts'
import { checkSpf } from './checks/spf.ts'
import type { CheckName, CheckResult, Outcome, VerifyDeps } from './types.ts'

export type AttestationInput = { did: string; domain: string; dkimSelectors: string[] }

export type AttestationVerification = {
  /** pass only when every check passes; fail when any fails; otherwise temperror (retry later). */
  outcome: Outcome
  reason: string
  checks: CheckResult[]
  checkedAt: string
}

// The lexicon's bounds (email.atmos.attestation): checked here too, because the labeler
// may be handed a record that never went through the lexicon validator.
const MAX_DOMAIN_LENGTH = 253
const MAX_SELECTORS = 10

/**
 * Verifies an attestation against DNS and the DID directory. Never throws: hostile input
 * is refused before any query, and every check classifies its own failures.
 */
export async function verifyAttestation(input: AttestationInput, deps: VerifyDeps): Promise<AttestationVerification> {
  const checkedAt = (deps.now?.() ?? new Date()).toISOString()
  const problem = inputProblem(input)
  if (problem) return { outcome: 'fail', reason: problem, checks: [], checkedAt }

  const { did, domain } = input
  const selectors = [...input.dkimSelectors]
  const checks = await Promise.all([
    guard('domain_control', () => checkDomainControl(did, domain, deps)),
    guard('mx', () => checkMx(domain, deps.dns)),
    guard('spf', () => checkSpf(domain, deps.dns)),
    guard('dkim', () => checkDkim(domain, selectors, deps.dns)),
    guard('dmarc', () => checkDmarc(domain, deps.dns)),
  ])

  const failed = checks.filter((c) => c.outcome === 'fail')
  const unsure = checks.filter((c) => c.outcome === 'temperror')
  if (failed.length > 0) {
    return { outcome: 'fail', reason: `Failed: ${failed.map((c) => c.check).join(', ')}.`, checks, checkedAt }
  }
  if (unsure.length > 0) {
    const names = unsure.map((c) => c.check).join(', ')
    return { outcome: 'temperror', reason: `Could not complete: ${names}; retry later.`, checks, checkedAt }
  }
  return { outcome: 'pass', reason: 'All checks pass.', checks, checkedAt }
}

/** Why the input cannot be verified (so no DNS query is sent), or null. */
export function inputProblem(input: unknown): string | null {
  const { did, domain, dkimSelectors } = (input ?? {}) as Record<string, unknown>
  if (typeof did !== 'string' || !isValidDid(did))
    return `DID ${JSON.stringify(clip(String(did), 80))} is not a valid DID.`
  if (!did.startsWith('did:plc:') && !did.startsWith('did:web:'))
    return `DID ${clip(did, 80)} uses a method other than did:plc or did:web.`
  if (typeof domain !== 'string') return 'The domain must be a string.'
  if (domain.length > MAX_DOMAIN_LENGTH)
    return `The domain is ${domain.length} characters long; at most ${MAX_DOMAIN_LENGTH} are allowed.`
  const bad = domainProblem(domain)
  if (bad) return `The domain ${bad}.`
  if (!Array.isArray(dkimSelectors) || dkimSelectors.length === 0) return 'At least one DKIM selector is required.'
  if (dkimSelectors.length > MAX_SELECTORS) {
    return `${dkimSelectors.length} DKIM selectors were given; at most ${MAX_SELECTORS} are allowed.`
  }
  for (const selector of dkimSelectors) {
    if (typeof selector !== 'string') return 'Every DKIM selector must be a string.'
    const problem = selectorProblem(selector)
    if (problem) return `DKIM selector ${problem}.`
  }
  const lowered = dkimSelectors.map((s: string) => s.toLowerCase())
  if (new Set(lowered).size !== lowered.length) return 'DKIM selectors must not repeat.'
  return null
}

/** A check that throws (a bug, or data nobody foresaw) is reported, not propagated. */
async function guard(check: CheckName, run: () => Promise<CheckResult>): Promise<CheckResult> {
  try {
    return await run()
  } catch (err) {
    const message = clip(String((err as Error)?.message ?? err), 200)
    return {
      check,
      outcome: 'temperror',
      reason: `The ${check} check failed unexpectedly: ${message}.`,
      warnings: [],
      details: {},
    }
  }
}
