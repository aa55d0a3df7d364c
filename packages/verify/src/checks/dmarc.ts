/// <reference path="../mailauth.d.ts" />
import { createRecordLookup, discoverPolicy, parseDmarcRecord } from 'mailauth/lib/dmarc/get-dmarc-record.js'
import type { DnsResolver } from '../dns/resolver.ts'
import { describeDnsError, lookup } from '../dns/resolver.ts'
import type { CheckResult } from '../types.ts'
import { CheckBuilder, clip, quote } from './result.ts'

/**
 * A DMARC record is one whose first tag is v=DMARC1: the tag name in either case, the
 * value exactly (RFC 7489 6.4 spells it as hex octets). Same rule as mailauth's discovery.
 */
const DMARC_VERSION = /^[vV][ \t]*=[ \t]*DMARC1[ \t]*(?:;|$)/
const POLICIES = ['none', 'quarantine', 'reject'] as const
type Policy = (typeof POLICIES)[number]
const WEAKER: Record<Policy, Policy> = { reject: 'quarantine', quarantine: 'none', none: 'none' }
const PUBLISH = 'publish "v=DMARC1; p=reject; rua=mailto:dmarc-reports@<domain>" (or p=quarantine)'

/** The domain (or, failing that, its organizational domain) must ask receivers to act on failing mail. */
export async function checkDmarc(domain: string, dns: DnsResolver): Promise<CheckResult> {
  const c = new CheckBuilder('dmarc')
  const name = `_dmarc.${domain}`
  const txt = await lookup(() => dns.resolveTxt(name))
  if (txt.status === 'temperror') return c.temperror(`Could not read the DMARC record at ${name}: ${txt.error}.`)
  const records = txt.status === 'found' ? txt.records.map((strings) => strings.join('').trim()) : []
  const dmarc = records.filter((r) => DMARC_VERSION.test(r))
  c.details.name = name
  c.details.records = records.slice(0, 10).map((r) => clip(r))

  if (dmarc.length > 1) {
    return c.fail(
      `${name} holds ${dmarc.length} DMARC records; receivers then apply no policy at all (RFC 7489 6.6.3): keep exactly one.`,
    )
  }

  let record = dmarc[0]
  let inheritedFrom: string | undefined
  if (record === undefined) {
    const nearMiss = records.find((r) => /v\s*=\s*DMARC1/i.test(r))
    if (nearMiss !== undefined) {
      return c.fail(
        `The record at ${name} (${quote(nearMiss, 60)}) does not start with v=DMARC1, so receivers ignore it: put "v=DMARC1;" first, exactly in that case.`,
      )
    }
    // No record of its own: the organizational domain's record applies (RFC 7489 6.6.3, found
    // with RFC 9989's DNS tree walk rather than a public suffix list).
    let discovered: Awaited<ReturnType<typeof discoverPolicy>>
    try {
      discovered = await discoverPolicy(
        domain,
        createRecordLookup((n, t) => dns.resolve(n, t)),
      )
    } catch (err) {
      return c.temperror(`Could not look for a DMARC record above ${domain}: ${describeDnsError(err)}.`)
    }
    if (!discovered.record || !discovered.recordDomain || discovered.recordDomain === domain) {
      return c.fail(`${domain} has no DMARC record at ${name}, nor does its organizational domain: ${PUBLISH}.`)
    }
    record = discovered.record.rr
    inheritedFrom = discovered.recordDomain
    c.details.inheritedFrom = inheritedFrom
    c.details.records = [clip(record)]
  }

  const warnings = new Set<string>()
  const parsed = parseDmarcRecord(record, { warnings })
  if (!parsed) return c.fail(`The DMARC record for ${domain} is not a valid tag list: ${PUBLISH}.`)
  if (warnings.has('duplicate-tag')) {
    return c.fail(
      `The DMARC record for ${domain} repeats a tag, which makes the whole record invalid: list each tag once.`,
    )
  }
  if (warnings.has('tag-case')) {
    c.warn('The DMARC record writes tag names in upper case (e.g. "P="); some receivers only read lower-case names.')
  }

  const source = inheritedFrom
    ? `the DMARC record of ${inheritedFrom} (inherited by ${domain})`
    : `the DMARC record of ${domain}`
  // A subdomain that inherits gets the sp= policy when there is one (RFC 7489 6.6.3).
  const tagName = inheritedFrom && parsed.sp !== undefined ? 'sp' : 'p'
  const raw = parsed[tagName]
  if (raw === undefined || raw === '') {
    return c.fail(`${capital(source)} has no p= policy, so receivers treat it as p=none: ${PUBLISH}.`)
  }
  if (!isPolicy(raw)) {
    return c.fail(
      `${capital(source)} has ${tagName}=${clip(String(raw), 30)}, which is not a DMARC policy: use p=quarantine or p=reject.`,
    )
  }
  if (inheritedFrom) c.warn(`${domain} has no DMARC record of its own; the policy of ${inheritedFrom} applies.`)
  c.details.policy = raw
  if (raw === 'none') {
    return c.fail(
      `DMARC policy is ${tagName}=none (${source}): receivers take no action on failing mail; publish p=quarantine or p=reject.`,
    )
  }

  let effective: Policy = raw
  // pct (RFC 7489 6.3) applies the policy to that share of failing mail and the next weaker
  // one to the rest. pct=0 applies it to none: the conventional "monitoring only" setting,
  // which we refuse like p=none even though RFC 7489 would quarantine under p=reject.
  const pct = rawTag(parsed.rr, 'pct')
  if (pct !== undefined) {
    const share = /^\d{1,3}$/.test(pct) ? Number(pct) : Number.NaN
    c.details.pct = pct
    if (share === 0) {
      return c.fail(
        `DMARC record has pct=0 (${source}): the ${raw} policy applies to no mail, so it acts like p=none; remove pct or set pct=100.`,
      )
    }
    if (Number.isNaN(share) || share > 100) {
      c.warn(
        `DMARC pct=${clip(pct, 10)} is not a number from 0 to 100; receivers ignore it and apply the policy to all mail.`,
      )
    } else if (share < 100) {
      c.warn(
        `DMARC pct=${share}: only ${share}% of failing mail gets p=${raw}, the rest gets p=${WEAKER[raw]}; set pct=100.`,
      )
      effective = WEAKER[raw]
    }
  }
  // t=y (RFC 9989, DMARCbis) asks receivers to apply the next weaker policy: reject acts as
  // quarantine (still enforcing: a warning), quarantine acts as none (not enforcing: fail).
  if (parsed.t === 'y') {
    if (WEAKER[raw] === 'none') {
      return c.fail(
        `DMARC record has t=y (testing) with p=${raw} (${source}): receivers apply p=none instead; remove t=y.`,
      )
    }
    c.warn(`DMARC record has t=y (testing): receivers apply p=${WEAKER[raw]} instead of p=${raw}; remove t=y.`)
    effective = WEAKER[raw]
  }
  c.details.effectivePolicy = effective

  if (typeof parsed.rua !== 'string' || parsed.rua.trim() === '') {
    c.warn('DMARC record has no rua= address, so you receive no aggregate reports; add rua=mailto:<address>.')
  }
  return c.pass(`${capital(source)} asks receivers to ${raw} failing mail (${tagName}=${raw}).`)
}

function isPolicy(value: unknown): value is Policy {
  return (POLICIES as readonly unknown[]).includes(value)
}

/** A tag's value as written (mailauth turns an unparseable pct into 0, which would read as pct=0). */
function rawTag(record: string, name: string): string | undefined {
  for (const spec of record.split(';')) {
    const eq = spec.indexOf('=')
    if (eq > 0 && spec.slice(0, eq).trim().toLowerCase() === name) return spec.slice(eq + 1).trim()
  }
  return undefined
}

const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)
