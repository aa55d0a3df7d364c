import type { Pool } from '@atmos/db'
import {
  type Activation,
  activateDomain,
  checkDomain,
  DomainError,
  type Enrolment,
  heldEnrolment,
  issueApiKey,
  issueCredential,
  MemberError,
  startEnrolment,
} from '@atmos/enrolment'
import type { Keyring } from '@atmos/secrets'
import type { DnsResolver, IdentityResolver } from '@atmos/verify'
import { type CheckNowResult, type CheckRateLimiter, checkNow } from './check.ts'
import type { EnrollConfig } from './config.ts'
import { type Control, domainControl } from './control.ts'
import { type SmtpSettings, smtpSettings } from './credentials.ts'
import { type DnsRecordToPublish, recordsFor } from './records.ts'
import { planSpf, type SpfPlan } from './spf.ts'

// The wizard's steps as functions of (the signed-in account, what it typed): what the pages
// call. Each answers with data to show or a WizardError whose message the member can act on.

export type WizardDeps = {
  sql: Pool
  /** The relay's members' key-encryption keys: issued DKIM keys are sealed under them. */
  keyring: Keyring
  dns: DnsResolver
  identity: IdentityResolver
  config: EnrollConfig
  /** pool.maxDomainsPerMember */
  maxDomains: number
  limiter: CheckRateLimiter
}

/** Who is signed in: the DID and the handle the OAuth client verified. */
export type Account = { did: string; handle?: string | null | undefined }

export class WizardError extends Error {
  override name = 'WizardError'
  readonly status: 400 | 403 | 404 | 409 | 429
  readonly retryAfterMs: number | undefined

  constructor(message: string, status: 400 | 403 | 404 | 409 | 429 = 400, retryAfterMs?: number) {
    super(message)
    this.status = status
    this.retryAfterMs = retryAfterMs
  }
}

/** Refusals of the enrolment store, said to the member as they are. */
async function refusing<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (err) {
    if (err instanceof DomainError || err instanceof MemberError) throw new WizardError(err.message, 409)
    throw err
  }
}

/** The domain a member typed or a URL carries, checked; a WizardError (400) says what is wrong. */
export function domainOf(input: string): string {
  try {
    return checkDomain(String(input ?? '').slice(0, 300))
  } catch (err) {
    throw new WizardError((err as Error).message)
  }
}

/**
 * Step 1 and 2: the member names a domain. Refused when another account holds it; otherwise
 * the member (pending if new) takes it pending and its keys are issued, or the enrolment
 * already under way is resumed. Returns what proves control, or which record will.
 */
export async function chooseDomain(
  deps: WizardDeps,
  account: Account,
  input: string,
  detail?: Record<string, unknown>,
): Promise<{ control: Control; enrolment: Enrolment }> {
  const domain = domainOf(input)
  const control = await domainControl(deps.sql, deps.dns, { ...account, domain })
  if (control.status === 'refused') throw new WizardError(control.reason, 409)
  const enrolment = await refusing(() =>
    startEnrolment(deps.sql, deps.keyring, {
      did: account.did,
      handle: account.handle ?? undefined,
      domain,
      selector: deps.config.selectorStem,
      maxDomains: deps.maxDomains,
      auditDetail: detail,
    }),
  )
  return { control, enrolment }
}

export type DomainRecords = {
  domain: string
  status: string
  control: Control
  spf: SpfPlan
  records: DnsRecordToPublish[]
  selectors: string[]
}

/** Step 3: every record to publish for a domain the account holds. */
export async function domainRecords(
  deps: WizardDeps,
  account: Account,
  input: string,
  timeoutMs = deps.config.checkTimeout,
): Promise<DomainRecords> {
  const domain = domainOf(input)
  const held = await heldEnrolment(deps.sql, account.did, domain)
  if (!held) throw new WizardError(`You have not started enrolling ${domain}.`, 404)
  const [control, spf] = await Promise.all([
    domainControl(deps.sql, deps.dns, { ...account, domain }, { timeoutMs }),
    planSpf(domain, deps.config.spfInclude, deps.dns, { timeoutMs }),
  ])
  // Without a mergeable SPF record the wizard still shows the pool's include on its own; the
  // refusal (spf.reason) is shown above it.
  const spfValue = spf.ok ? spf.record : `v=spf1 include:${deps.config.spfInclude} -all`
  const records = recordsFor(
    {
      did: account.did,
      domain,
      keys: held.keys.map((k) => ({ selector: k.selector, txt: k.txt })),
      spf: spfValue,
      handleProvesControl: control.status === 'proven' && control.by === 'handle',
    },
    deps.config,
  )
  return {
    domain,
    status: held.domainStatus,
    control,
    spf,
    records,
    selectors: held.keys.map((k) => k.selector),
  }
}

/** Step 4: check now, rate-limited per DID. */
export async function checkDomainNow(
  deps: WizardDeps,
  account: Account,
  input: string,
): Promise<CheckNowResult & { domain: string }> {
  const domain = domainOf(input)
  const held = await heldEnrolment(deps.sql, account.did, domain)
  if (!held) throw new WizardError(`You have not started enrolling ${domain}.`, 404)
  const taken = deps.limiter.take(account.did)
  if (!taken.ok) {
    const s = Math.ceil(taken.retryAfterMs / 1000)
    throw new WizardError(`You ran the checks often just now: try again in ${s} s.`, 429, taken.retryAfterMs)
  }
  // One bound for the whole run: a third for reading what to compare with, the rest for the checks.
  const started = Date.now()
  const budget = deps.config.checkTimeout
  const { records } = await domainRecords(deps, account, domain, Math.ceil(budget / 3))
  const result = await checkNow(
    {
      did: account.did,
      domain,
      selectors: held.keys.map((k) => k.selector),
      records,
      spfInclude: deps.config.spfInclude,
    },
    { dns: deps.dns, identity: deps.identity, timeoutMs: Math.max(1, budget - (Date.now() - started)) },
  )
  return { ...result, domain }
}

/**
 * After step 5: the labeler verified the attestation, so the domain (and a pending member)
 * becomes active. The caller announces `changes` to the labeler after this returns.
 */
export async function activate(
  deps: WizardDeps,
  account: Account,
  input: string,
  detail?: Record<string, unknown>,
): Promise<Activation> {
  const domain = domainOf(input)
  return refusing(() => activateDomain(deps.sql, { did: account.did, domain, auditDetail: detail }))
}

/**
 * Step 6: the domain's SMTP credential (new password each time) and its API key (a new key
 * each time, the previous one revoked), shown once with how to use them.
 */
export async function credentials(
  deps: WizardDeps,
  account: Account,
  input: string,
  detail?: Record<string, unknown>,
): Promise<SmtpSettings & { apiKey: string }> {
  const domain = domainOf(input)
  const issued = await refusing(() => issueCredential(deps.sql, { did: account.did, domain, auditDetail: detail }))
  const key = await refusing(() => issueApiKey(deps.sql, { did: account.did, domain, ...(detail ? { detail } : {}) }))
  return { ...smtpSettings(deps.config, issued), apiKey: key.key }
}
