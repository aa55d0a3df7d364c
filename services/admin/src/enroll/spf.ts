import { isIPv4, isIPv6 } from 'node:net'
import { errorCode, isAbsence } from '@atmos/verify'

// Merging the pool's `include:` into a domain's SPF record (RFC 7208), and counting the DNS
// lookups the result costs a receiver. A domain has one SPF record or none: a second one is a
// permerror that fails every message, so the merge never produces one, and refuses to merge
// into a record that is already broken (the member must repair it first; we say how).

/** Receivers stop evaluating past 10 lookup terms (RFC 7208 4.6.4) and the result is permerror. */
export const LOOKUP_LIMIT = 10
/** RFC 7208 3.4: a record longer than this may not fit a UDP answer with the rest of the TXT set. */
const RECOMMENDED_MAX_OCTETS = 450

const VERSION = /^v=spf1$/i
const SPF_RECORD = /^v=spf1(?: |$)/i
const MECHANISMS = ['all', 'include', 'a', 'mx', 'ptr', 'ip4', 'ip6', 'exists'] as const
type MechanismName = (typeof MECHANISMS)[number]
/** Terms that make the receiver query DNS (RFC 7208 4.6.4); `redirect=` is the modifier among them. */
const LOOKUP_MECHANISMS: ReadonlySet<string> = new Set(['include', 'a', 'mx', 'ptr', 'exists'])

export type SpfTerm =
  | { kind: 'mechanism'; raw: string; qualifier: '+' | '-' | '~' | '?'; name: MechanismName; value: string }
  | { kind: 'modifier'; raw: string; name: string; value: string }

export type ParsedSpf = { ok: true; terms: SpfTerm[] } | { ok: false; reason: string }

// domain-spec (RFC 7208 7.1): macro-string with a toplabel; macros are kept as written.
const DOMAIN_SPEC = /^(?:[\x21-\x24\x26-\x7e]|%[{][slodiphcrtv]\d*r?[.+,/_=-]*[}]|%%|%_|%-)+$/i
const MODIFIER_NAME = /^[a-z][a-z0-9_.-]*$/i

/** The terms of one SPF record, or why it is not a valid one (a receiver's permerror). */
export function parseSpf(record: string): ParsedSpf {
  const [version, ...rest] = record.split(' ')
  if (!version || !VERSION.test(version)) return { ok: false, reason: 'it does not start with "v=spf1"' }
  const terms: SpfTerm[] = []
  const seen = new Set<string>()
  for (const raw of rest) {
    if (raw === '') continue
    const eq = raw.indexOf('=')
    const colon = raw.search(/[:/]/)
    if (eq > 0 && (colon === -1 || eq < colon)) {
      const name = raw.slice(0, eq)
      const value = raw.slice(eq + 1)
      if (!MODIFIER_NAME.test(name)) return { ok: false, reason: `"${clip(raw)}" is not a valid term` }
      const lower = name.toLowerCase()
      if ((lower === 'redirect' || lower === 'exp') && seen.has(lower)) {
        return { ok: false, reason: `the ${lower}= modifier appears more than once` }
      }
      if ((lower === 'redirect' || lower === 'exp') && !DOMAIN_SPEC.test(value)) {
        return { ok: false, reason: `"${clip(raw)}" does not name a domain` }
      }
      seen.add(lower)
      terms.push({ kind: 'modifier', raw, name: lower, value })
      continue
    }
    const qualifier = '+-~?'.includes(raw[0]!) ? (raw[0] as '+' | '-' | '~' | '?') : '+'
    const body = '+-~?'.includes(raw[0]!) ? raw.slice(1) : raw
    // The name, then the rest as it is: one anchored run, no backtracking over the value.
    const word = /^[a-z0-9]+/i.exec(body)?.[0]
    const name = word?.toLowerCase()
    if (!word || !name || !(MECHANISMS as readonly string[]).includes(name)) {
      return { ok: false, reason: `"${clip(raw)}" is not an SPF mechanism or modifier` }
    }
    const value = body.slice(word.length)
    const problem = mechanismProblem(name as MechanismName, value)
    if (problem) return { ok: false, reason: `"${clip(raw)}" ${problem}` }
    terms.push({ kind: 'mechanism', raw, qualifier, name: name as MechanismName, value: value.replace(/^:/, '') })
  }
  return { ok: true, terms }
}

function mechanismProblem(name: MechanismName, value: string): string | null {
  const cidr = (v: string, max: number) => v === '' || (/^\/\d{1,3}$/.test(v) && Number(v.slice(1)) <= max)
  switch (name) {
    case 'all':
      return value === '' ? null : 'has a value, but "all" takes none'
    case 'include':
    case 'exists':
      return value.startsWith(':') && DOMAIN_SPEC.test(value.slice(1)) ? null : 'needs a domain after ":"'
    case 'ptr':
      return value === '' || (value.startsWith(':') && DOMAIN_SPEC.test(value.slice(1))) ? null : 'is malformed'
    case 'a':
    case 'mx': {
      // [":" domain-spec] [ip4-cidr-length] ["/" ip6-cidr-length]
      const mm = /^(?::([^/]+))?((?:\/\d{1,3})?)((?:\/\/\d{1,3})?)$/.exec(value)
      if (!mm) return 'is malformed'
      if (mm[1] !== undefined && !DOMAIN_SPEC.test(mm[1])) return 'does not name a domain'
      if (!cidr(mm[2] ?? '', 32) || !cidr((mm[3] ?? '').slice(1), 128)) return 'has an invalid prefix length'
      return null
    }
    case 'ip4': {
      const mm = /^:([^/]+)(\/\d{1,2})?$/.exec(value)
      if (!mm || !isIPv4(mm[1]!) || !cidr(mm[2] ?? '', 32)) return 'is not an IPv4 address or network'
      return null
    }
    case 'ip6': {
      const mm = /^:([^/]+)(\/\d{1,3})?$/.exec(value)
      if (!mm || !isIPv6(mm[1]!) || !cidr(mm[2] ?? '', 128)) return 'is not an IPv6 address or network'
      return null
    }
  }
}

export type SpfMerge =
  | {
      ok: true
      /** The one SPF record to publish (replacing the existing one, if any). */
      record: string
      /** The SPF record published now, or null. */
      existing: string | null
      /** False when the existing record already includes the pool. */
      changed: boolean
      warnings: string[]
    }
  | { ok: false; existing: string | null; reason: string }

/**
 * The domain's SPF record with `include:<pool>` added: the author's terms kept in their
 * order, the include placed before `all` (which stays last) or, without `all`, after the
 * last mechanism. `txt` is the domain's TXT records (each one's strings already joined).
 * Idempotent: a record that already includes the pool comes back unchanged.
 */
export function mergeSpf(txt: string[], poolInclude: string): SpfMerge {
  const include = poolInclude.trim().toLowerCase().replace(/\.$/, '')
  const spf = txt.filter((r) => SPF_RECORD.test(r.trim()))
  if (spf.length > 1) {
    return {
      ok: false,
      existing: null,
      reason:
        `the domain publishes ${spf.length} SPF records, which makes receivers fail every SPF check (RFC 7208 permerror): ` +
        `merge them into one record first (${spf.map((r) => JSON.stringify(clip(r, 80))).join(', ')})`,
    }
  }
  const nearMiss = txt.find((r) => /^\s*v\s*=\s*spf1/i.test(r) && !SPF_RECORD.test(r.trim()))
  if (spf.length === 0) {
    const warnings = [
      'The domain has no SPF record yet: this one authorizes only the pool. If other servers send mail as the domain, add them before "-all".',
    ]
    if (nearMiss) {
      warnings.push(
        `The TXT record ${JSON.stringify(clip(nearMiss, 80))} looks like SPF but is not one (it must start with "v=spf1 "); remove it.`,
      )
    }
    return { ok: true, record: `v=spf1 include:${include} -all`, existing: null, changed: true, warnings }
  }
  const existing = spf[0]!
  const parsed = parseSpf(existing.trim())
  if (!parsed.ok) {
    return {
      ok: false,
      existing,
      reason: `the domain's SPF record ${JSON.stringify(clip(existing, 120))} is not valid: ${parsed.reason}; fix it first`,
    }
  }
  const { terms } = parsed
  const warnings: string[] = []
  const all = terms.find((t) => t.kind === 'mechanism' && t.name === 'all')
  if (all?.kind === 'mechanism' && all.qualifier === '+') {
    warnings.push(
      `The record ends in "${all.raw}", which authorizes every server on the internet: the SPF check fails until it ends in "-all" (or "~all").`,
    )
  }
  const present = terms.some(
    (t) => t.kind === 'mechanism' && t.name === 'include' && t.value.toLowerCase().replace(/\.$/, '') === include,
  )
  if (present) return { ok: true, record: existing.trim(), existing, changed: false, warnings }
  const at = all
    ? terms.indexOf(all)
    : terms.reduce((last, t, i) => (t.kind === 'mechanism' ? i + 1 : last), 0) || firstModifier(terms)
  const merged = [...terms.slice(0, at).map((t) => t.raw), `include:${include}`, ...terms.slice(at).map((t) => t.raw)]
  const record = `v=spf1 ${merged.join(' ')}`
  if (!all && !terms.some((t) => t.kind === 'modifier' && t.name === 'redirect')) {
    warnings.push(
      'The record has no "all" term, so mail from servers it does not list is neutral; end it with "-all" (or "~all").',
    )
  }
  if (Buffer.byteLength(record) > RECOMMENDED_MAX_OCTETS) {
    warnings.push(
      `The merged record is ${Buffer.byteLength(record)} octets long; over ${RECOMMENDED_MAX_OCTETS} it may not fit one DNS answer (RFC 7208 3.4).`,
    )
  }
  return { ok: true, record, existing, changed: true, warnings }
}

/** Without mechanisms the include goes before the first modifier (a redirect= is tried only after it). */
function firstModifier(terms: SpfTerm[]): number {
  const i = terms.findIndex((t) => t.kind === 'modifier')
  return i === -1 ? terms.length : i
}

export type TxtResolver = { resolveTxt(name: string): Promise<string[][]> }

export type LookupCount = {
  /** Lookup terms a receiver evaluates, counted through includes and redirects. */
  count: number
  /** False when some part could not be counted (DNS failed, too deep, out of time): count is a floor. */
  complete: boolean
  problems: string[]
}

/**
 * How many DNS-lookup terms a receiver evaluates for `record` (of `domain`), through every
 * include and redirect, bounded in depth and time. Never throws.
 */
export async function countLookups(
  record: string,
  domain: string,
  dns: TxtResolver,
  opts: { maxDepth?: number; timeoutMs?: number } = {},
): Promise<LookupCount> {
  const maxDepth = opts.maxDepth ?? 10
  const deadline = Date.now() + (opts.timeoutMs ?? 5000)
  const problems: string[] = []
  let complete = true
  const note = (p: string) => {
    complete = false
    if (!problems.includes(p)) problems.push(p)
  }
  const cache = new Map<string, Promise<string[][]>>()
  const txtOf = (name: string) => {
    let answer = cache.get(name)
    if (!answer) {
      answer = dns.resolveTxt(name)
      cache.set(name, answer)
    }
    return answer
  }

  async function walk(rec: string, path: string[]): Promise<number> {
    const parsed = parseSpf(rec.trim())
    if (!parsed.ok) {
      note(`the SPF record of ${path.at(-1)} is not valid (${parsed.reason})`)
      return 0
    }
    let count = 0
    const all = parsed.terms.some((t) => t.kind === 'mechanism' && t.name === 'all')
    for (const t of parsed.terms) {
      const target =
        t.kind === 'mechanism' && t.name === 'include'
          ? t.value
          : t.kind === 'modifier' && t.name === 'redirect' && !all
            ? t.value
            : null
      const counts = t.kind === 'mechanism' ? LOOKUP_MECHANISMS.has(t.name) : t.name === 'redirect' && !all
      if (!counts) continue
      count++
      if (target === null) continue
      count += await follow(target, path)
    }
    return count
  }

  async function follow(target: string, path: string[]): Promise<number> {
    const name = target.toLowerCase().replace(/\.$/, '')
    if (name.includes('%')) {
      note(`${target} holds a macro, which is expanded per message; its lookups are not counted`)
      return 0
    }
    if (path.includes(name)) {
      note(`${[...path, name].join(' → ')} is a loop; receivers give a permerror`)
      return 0
    }
    if (path.length > maxDepth) {
      note(`includes nest deeper than ${maxDepth} levels below ${path[0]}; the rest is not counted`)
      return 0
    }
    const left = deadline - Date.now()
    if (left <= 0) {
      note('counting took too long; the rest is not counted')
      return 0
    }
    let txt: string[][]
    try {
      txt = await withTimeout(txtOf(name), left)
    } catch (err) {
      if ((err as Error).message === 'timeout') note('counting took too long; the rest is not counted')
      else if (isAbsence(err)) note(`${name} publishes no SPF record; receivers give a permerror for the include`)
      else note(`could not read the SPF record of ${name} (${errorCode(err)}); try again`)
      return 0
    }
    const records = txt.map((s) => s.join('')).filter((r) => SPF_RECORD.test(r.trim()))
    if (records.length !== 1) {
      note(
        records.length === 0
          ? `${name} publishes no SPF record; receivers give a permerror for the include`
          : `${name} publishes ${records.length} SPF records; receivers give a permerror for the include`,
      )
      return 0
    }
    return walk(records[0]!, [...path, name])
  }

  const count = await walk(record, [domain.toLowerCase()])
  return { count, complete, problems }
}

export type SpfPlan = SpfMerge & { lookups?: LookupCount }

/**
 * The SPF record to publish for `domain`: its current TXT records read through `dns`, the
 * pool merged in, and the lookups of the result counted, with a warning past 10. A DNS error
 * reading the domain's TXT records is not a merge: the member is told to try again.
 */
export async function planSpf(
  domain: string,
  poolInclude: string,
  dns: TxtResolver,
  opts: { maxDepth?: number; timeoutMs?: number } = {},
): Promise<SpfPlan> {
  let txt: string[] = []
  try {
    txt = (await withTimeout(dns.resolveTxt(domain), opts.timeoutMs ?? 5000)).map((s) => s.join(''))
  } catch (err) {
    if (!isAbsence(err)) {
      return {
        ok: false,
        existing: null,
        reason: `could not read the TXT records of ${domain} (${errorCode(err)}) to merge SPF into: try again`,
      }
    }
  }
  const merge = mergeSpf(txt, poolInclude)
  if (!merge.ok) return merge
  const lookups = await countLookups(merge.record, domain, dns, opts)
  const warnings = [...merge.warnings]
  if (lookups.count > LOOKUP_LIMIT) {
    warnings.push(
      `The record needs ${lookups.count}${lookups.complete ? '' : ' or more'} DNS lookups; receivers stop at ${LOOKUP_LIMIT} and SPF then fails (permerror): replace some include:, a or mx terms with ip4:/ip6: ranges.`,
    )
  }
  for (const p of lookups.problems) warnings.push(`While counting DNS lookups: ${p}.`)
  return { ...merge, warnings, lookups }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

function clip(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max)}…` : s
}
