import type { DnsResolver } from './dns/resolver.ts'
import type { IdentityResolver } from './identity/resolver.ts'

export type CheckName = 'domain_control' | 'mx' | 'spf' | 'dkim' | 'dmarc'

/** `temperror` means DNS (or the DID directory) could not answer: retry later, never treat as fail. */
export type Outcome = 'pass' | 'fail' | 'temperror'

export type CheckResult = {
  check: CheckName
  outcome: Outcome
  /** One sentence a person can act on. */
  reason: string
  warnings: string[]
  /** The records looked at, clipped, for the admin's live check and the audit trail. */
  details: Record<string, unknown>
}

export type VerifyDeps = {
  dns: DnsResolver
  identity: IdentityResolver
  now?: () => Date
}
