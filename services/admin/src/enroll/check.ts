import {
  type CheckName,
  type CheckResult,
  type DnsResolver,
  describeDnsError,
  type IdentityResolver,
  isAbsence,
  verifyAttestation,
} from '@atmos/verify'
import { WindowLimiter } from '../web/rate-limit.ts'
import type { DnsRecordToPublish } from './records.ts'
import { parseSpf } from './spf.ts'

// Step 4 of the wizard, "check now": the labeler's own checks (packages/verify) over the
// member's DNS as it is now, each with what to do about it, and beside them what DNS holds at
// each name the wizard asked the member to publish, so that a record not yet propagated reads
// differently from a record published wrong. A DNS error is never a failure: "try again".

/** `try-again` is verify's temperror: DNS or the DID directory did not answer. */
export type CheckOutcome = 'pass' | 'fail' | 'try-again'

export type CheckView = {
  check: CheckName
  outcome: CheckOutcome
  reason: string
  /** What to do, one line; null when it passes. */
  fix: string | null
  warnings: string[]
}

/**
 * What DNS holds now at a record's name: `published` (as asked), `different` (something else
 * is there: wrong, or an old value still cached), `absent` (not there, or not propagated
 * yet), `unknown` (the query failed: try again).
 */
export type SeenState = 'published' | 'different' | 'absent' | 'unknown'

export type SeenRecord = {
  purpose: DnsRecordToPublish['purpose']
  name: string
  type: DnsRecordToPublish['type']
  expected: string
  seen: string[]
  state: SeenState
  hint: string
}

export type CheckNowResult = {
  outcome: CheckOutcome
  summary: string
  checks: CheckView[]
  records: SeenRecord[]
  checkedAt: string
}

export type CheckNowInput = {
  did: string
  domain: string
  selectors: string[]
  /** The records the wizard showed (records.ts), compared with what DNS holds. */
  records: DnsRecordToPublish[]
  /** The pool's SPF include: an SPF record is as asked when it includes it. */
  spfInclude: string
}

const CHECK_ORDER: CheckName[] = ['domain_control', 'dkim', 'spf', 'dmarc', 'mx']

/** Runs the labeler's checks and reads each record, within `timeoutMs` in all. Never throws. */
export async function checkNow(
  input: CheckNowInput,
  deps: { dns: DnsResolver; identity: IdentityResolver; timeoutMs: number; now?: () => Date },
): Promise<CheckNowResult> {
  const checkedAt = (deps.now?.() ?? new Date()).toISOString()
  const work = Promise.all([
    verifyAttestation(
      { did: input.did, domain: input.domain, dkimSelectors: input.selectors },
      { dns: deps.dns, identity: deps.identity },
    ),
    Promise.all(input.records.map((r) => seeRecord(r, deps.dns, input.spfInclude))),
  ])
  const done = await deadline(work, deps.timeoutMs)
  if (!done) {
    const reason = `The checks took longer than ${Math.round(deps.timeoutMs / 1000)} s (DNS is slow to answer): try again.`
    return {
      outcome: 'try-again',
      summary: reason,
      checks: CHECK_ORDER.map((check) => ({ check, outcome: 'try-again', reason, fix: TRY_AGAIN, warnings: [] })),
      records: input.records.map((r) => ({
        purpose: r.purpose,
        name: r.name,
        type: r.type,
        expected: r.value,
        seen: [],
        state: 'unknown',
        hint: 'Not read in time: try again.',
      })),
      checkedAt,
    }
  }
  const [verification, records] = done
  if (verification.checks.length === 0) {
    // verify refused the input itself (a bad selector list, say): nothing was asked of DNS.
    return { outcome: 'fail', summary: verification.reason, checks: [], records, checkedAt }
  }
  const checks = [...verification.checks]
    .sort((a, b) => CHECK_ORDER.indexOf(a.check) - CHECK_ORDER.indexOf(b.check))
    .map((c) => view(c, input))
  const failed = checks.filter((c) => c.outcome === 'fail')
  const unsure = checks.filter((c) => c.outcome === 'try-again')
  const outcome: CheckOutcome = failed.length ? 'fail' : unsure.length ? 'try-again' : 'pass'
  const summary =
    outcome === 'pass'
      ? 'Every check passes: you can publish the attestation.'
      : outcome === 'fail'
        ? `Not yet: ${failed.map((c) => LABELS[c.check]).join(', ')} ${failed.length === 1 ? 'fails' : 'fail'}; see how to fix ${failed.length === 1 ? 'it' : 'them'} below.`
        : `DNS did not answer for ${unsure.map((c) => LABELS[c.check]).join(', ')}: try again in a minute.`
  return { outcome, summary, checks, records, checkedAt }
}

const TRY_AGAIN = 'DNS (or the DID directory) did not answer this time; nothing is wrong yet. Try again in a minute.'

const LABELS: Record<CheckName, string> = {
  domain_control: 'domain control',
  dkim: 'DKIM',
  spf: 'SPF',
  dmarc: 'DMARC',
  mx: 'MX',
}

function view(c: CheckResult, input: CheckNowInput): CheckView {
  const outcome: CheckOutcome = c.outcome === 'temperror' ? 'try-again' : c.outcome
  return {
    check: c.check,
    outcome,
    reason: c.reason,
    fix: outcome === 'pass' ? null : outcome === 'try-again' ? TRY_AGAIN : fixFor(c.check, input),
    warnings: c.warnings,
  }
}

/** The fix for a failing check, naming the record of the wizard's list that it needs. */
export function fixFor(check: CheckName, input: Pick<CheckNowInput, 'domain' | 'did' | 'records'>): string {
  const of = (purpose: DnsRecordToPublish['purpose']) => input.records.filter((r) => r.purpose === purpose)
  const quoted = (rs: DnsRecordToPublish[]) => rs.map((r) => `${r.name} ${r.type} "${r.value}"`).join(' and ')
  switch (check) {
    case 'domain_control': {
      const rs = of('domain_control')
      return rs.length
        ? `Publish ${quoted(rs)} (step 3), or use ${input.domain} as your handle.`
        : `Publish _atproto.${input.domain} TXT "did=${input.did}", or use ${input.domain} as your handle.`
    }
    case 'dkim':
      return `Publish both DKIM records exactly as shown in step 3 (${of('dkim')
        .map((r) => r.name)
        .join(', ')}); a long key is one record made of several quoted strings.`
    case 'spf': {
      const rs = of('spf')
      return rs.length
        ? `Make ${quoted(rs)} the only SPF record of ${input.domain} (replace the old one, do not add a second).`
        : `Publish one SPF record for ${input.domain} that includes the pool.`
    }
    case 'dmarc':
      return `Publish ${quoted(of('dmarc'))}, replacing any other DMARC record at that name.`
    case 'mx': {
      const rs = of('mx')
      return rs.length
        ? `Give ${input.domain} an MX record pointing at the server that receives its mail, or publish ${quoted(rs)} to have the pool receive replies.`
        : `Give ${input.domain} an MX record pointing at the server that receives its mail.`
    }
  }
}

/** What DNS holds at one record's name, compared with what the wizard asked for. */
export async function seeRecord(r: DnsRecordToPublish, dns: DnsResolver, spfInclude: string): Promise<SeenRecord> {
  const base = { purpose: r.purpose, name: r.name, type: r.type, expected: r.value }
  let seen: string[]
  try {
    seen =
      r.type === 'MX'
        ? (await dns.resolveMx(r.name)).map((m) => `${m.priority} ${m.exchange.replace(/\.$/, '')}.`)
        : (await dns.resolveTxt(r.name)).map((s) => s.join(''))
  } catch (err) {
    if (isAbsence(err)) {
      return { ...base, seen: [], state: 'absent', hint: 'Not in DNS yet: publish it, or wait for it to propagate.' }
    }
    return { ...base, seen: [], state: 'unknown', hint: `Could not read it (${describeDnsError(err)}): try again.` }
  }
  const clipped = seen.slice(0, 10).map((s) => (s.length > 600 ? `${s.slice(0, 600)}…` : s))
  const state = compare(r, seen, spfInclude)
  const hint =
    state === 'published'
      ? 'Published as asked.'
      : state === 'absent'
        ? 'No such record yet: publish it, or wait for it to propagate.'
        : 'Something else is published here: replace it with the value shown (or wait if you changed it just now).'
  return { ...base, seen: clipped, state, hint }
}

function compare(r: DnsRecordToPublish, seen: string[], spfInclude: string): SeenState {
  const norm = (s: string) => s.replace(/\s+/g, ' ').trim()
  switch (r.purpose) {
    case 'dkim': {
      const keys = seen.filter((s) => /(^|;)\s*p\s*=/.test(s))
      if (!keys.length) return 'absent'
      const want = tagP(r.value)
      return keys.length === 1 && tagP(keys[0]!) === want ? 'published' : 'different'
    }
    case 'spf': {
      const spf = seen.filter((s) => /^v=spf1( |$)/i.test(s.trim()))
      if (!spf.length) return 'absent'
      if (spf.length > 1) return 'different'
      const parsed = parseSpf(spf[0]!.trim())
      const include = spfInclude.toLowerCase().replace(/\.$/, '')
      const ok =
        parsed.ok &&
        parsed.terms.some(
          (t) => t.kind === 'mechanism' && t.name === 'include' && t.value.toLowerCase().replace(/\.$/, '') === include,
        )
      return ok ? 'published' : 'different'
    }
    case 'dmarc': {
      const dmarc = seen.filter((s) => /^v\s*=\s*DMARC1/i.test(s.trim()))
      if (!dmarc.length) return 'absent'
      return dmarc.length === 1 && /(^|;)\s*p\s*=\s*(quarantine|reject)\s*(;|$)/i.test(dmarc[0]!)
        ? 'published'
        : 'different'
    }
    case 'domain_control': {
      const claims = seen.filter((s) => s.startsWith('did='))
      if (!claims.length) return 'absent'
      return claims.length === 1 && claims[0] === r.value ? 'published' : 'different'
    }
    case 'mx':
      if (!seen.length) return 'absent'
      return seen.some((s) =>
        norm(s)
          .toLowerCase()
          .endsWith(` ${norm(r.value).split(' ').pop()!.toLowerCase()}`),
      )
        ? 'published'
        : 'different'
  }
}

function tagP(record: string): string | undefined {
  for (const part of record.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === 'p') return part.slice(eq + 1).replace(/\s+/g, '')
  }
  return undefined
}

async function deadline<T>(work: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms)
  })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Check-now runs per DID in a fixed window (the same counting as sign-in's per address).
 * Each replica counts its own, which bounds the DNS work one account can cause.
 */
export class CheckRateLimiter {
  private readonly window: WindowLimiter

  constructor(limit: number, windowMs: number, now: () => number = Date.now) {
    this.window = new WindowLimiter(limit, windowMs, now)
  }

  /** Takes one run for `did`, or says how long until the next is allowed. */
  take(did: string): { ok: true } | { ok: false; retryAfterMs: number } {
    const waitSeconds = this.window.take(did)
    return waitSeconds ? { ok: false, retryAfterMs: waitSeconds * 1000 } : { ok: true }
  }
}
