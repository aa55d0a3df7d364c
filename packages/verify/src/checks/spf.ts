/// <reference path="../mailauth.d.ts" />
import { BlockList, isIPv6 } from 'node:net'
import { spf as evaluateSpf } from 'mailauth/lib/spf/index.js'
import type { DnsResolver } from '../dns/resolver.ts'
import { errorCode, lookup } from '../dns/resolver.ts'
import type { CheckResult } from '../types.ts'
import { CheckBuilder, clip, quote } from './result.ts'

/**
 * Documentation addresses (RFC 5737, RFC 3849): no legitimate policy authorizes them, so
 * a policy that passes mail from them passes mail from anyone. Evaluating the policy
 * (rather than pattern-matching "+all") catches every disguise: `all`, `ip4:0.0.0.0/0`,
 * `ip6:::/0`, an include or redirect chain ending in +all.
 */
export const PROBE_IPV4 = '192.0.2.1'
export const PROBE_IPV6 = '2001:db8::1'

/** Bounds the whole evaluation (all its lookups); past it the result is temperror. */
const EVALUATION_LIMIT_MS = 20_000

const SPF_VERSION = /^v=spf1(?: |$)/i

type Evaluation = {
  ip: string
  result: string
  text: string
  lookups?: { count: number; void: number; limit: number }
}

export async function checkSpf(domain: string, dns: DnsResolver): Promise<CheckResult> {
  const c = new CheckBuilder('spf')
  const resolve = memoize(dns)

  const txt = await lookup(() => resolve(domain, 'TXT') as Promise<string[][]>)
  if (txt.status === 'temperror') return c.temperror(`Could not read the SPF record of ${domain}: ${txt.error}.`)
  if (txt.status === 'absent' && txt.code === 'ENOTFOUND') {
    return c.fail(`${domain} does not exist in DNS (NXDOMAIN): publish an SPF record such as "v=spf1 mx -all".`)
  }
  // One TXT record is its character-strings joined without separators (RFC 7208 3.3).
  const records = txt.status === 'found' ? txt.records.map((strings) => strings.join('')) : []
  const spfRecords = records.filter((r) => SPF_VERSION.test(r))
  c.details.records = spfRecords.map((r) => clip(r))
  if (spfRecords.length === 0) {
    return c.fail(`${domain} publishes no SPF record: add one TXT record such as "v=spf1 mx -all".`)
  }
  if (spfRecords.length > 1) {
    return c.fail(
      `${domain} publishes ${spfRecords.length} SPF records, which is an error (RFC 7208 permerror) and fails every check: merge them into one.`,
    )
  }
  const record = spfRecords[0] as string

  const [v4, v6] = await Promise.all([evaluate(domain, PROBE_IPV4, resolve), evaluate(domain, PROBE_IPV6, resolve)])
  c.details.evaluation = [v4, v6].map(({ ip, result, lookups }) => ({ ip, result, lookups }))

  for (const e of [v4, v6]) {
    if (e.result === 'pass') return c.fail(anyoneMaySend(record, e.ip))
  }
  for (const e of [v4, v6]) {
    if (e.result === 'permerror') return c.fail(permerrorReason(e))
  }
  for (const e of [v4, v6]) {
    if (e.result === 'temperror') return c.temperror(`Could not evaluate the SPF policy of ${domain}: ${e.text}.`)
  }
  if (v4.result === 'none' || v6.result === 'none') {
    return c.fail(`${domain} publishes no SPF record: add one TXT record such as "v=spf1 mx -all".`)
  }

  if (v4.result === 'softfail' || v6.result === 'softfail') {
    c.warn('SPF policy ends in ~all (softfail): receivers only mark mail from unlisted servers; prefer -all.')
  } else if (v4.result === 'neutral' || v6.result === 'neutral') {
    c.warn(
      'SPF policy ends in ?all or has no "all" term: mail from unlisted servers is neutral, neither passed nor failed; end it with -all.',
    )
  }
  return c.pass(`${domain} publishes one SPF record and it does not authorize arbitrary senders.`)
}

async function evaluate(domain: string, ip: string, resolve: Resolve): Promise<Evaluation> {
  const sender = `postmaster@${domain}`
  try {
    const res = await evaluateSpf({
      sender,
      ip,
      helo: domain,
      mta: 'atmos-verify',
      // RFC 7208 to the letter: a record any strict receiver rejects (syntax errors, more than
      // two void lookups) is a permerror here too, rather than a warning mailauth passes over.
      strict: true,
      maxElapsedTime: EVALUATION_LIMIT_MS,
      resolver: resolve as (name: string, type: string) => Promise<string[][]>,
    })
    const comment = res.status.comment ?? ''
    // The comment is "<mta>: ... lookup of <sender>: <why>"; the why is what a person needs.
    const at = comment.indexOf(`${sender}: `)
    const text = at >= 0 ? comment.slice(at + sender.length + 2) : comment
    return { ip, result: res.status.result, text: clip(text, 300), lookups: res.lookups }
  } catch (err) {
    return { ip, result: 'temperror', text: `the evaluation failed (${errorCode(err)})` }
  }
}

function permerrorReason(e: Evaluation): string {
  if (/too many dns requests/i.test(e.text) || (e.lookups && e.lookups.count > e.lookups.limit)) {
    return 'SPF policy needs more than 10 DNS lookups (include, a, mx, ptr, exists, redirect), so receivers return permerror: flatten or remove includes.'
  }
  if (/too many void/i.test(e.text) || (e.lookups && e.lookups.void > 2)) {
    return 'SPF policy makes more than 2 DNS lookups that find nothing (void lookups), so receivers return permerror: remove the terms that name missing hosts.'
  }
  return `SPF policy has a permanent error that makes receivers ignore it: ${e.text}.`
}

/** Names the term that lets anyone send, so the reason says what to change. */
function anyoneMaySend(record: string, ip: string): string {
  const terms = record.trim().split(/\s+/).slice(1)
  for (const term of terms) {
    if (/^\+?all$/i.test(term)) {
      return `SPF record ends in ${term === 'all' ? 'a bare "all", which means +all' : `"${term}"`}: anyone may send as this domain; end it with -all.`
    }
  }
  for (const term of terms) {
    const m = /^\+?(ip4|ip6):(.+?)(?:\/(\d+))?$/i.exec(term)
    if (m && covers(m[2] as string, m[3], ip)) {
      return `SPF record authorizes "${term}", a range so wide it includes the unused test address ${ip}: anyone may send as this domain; list only your own servers.`
    }
  }
  const chain = terms.filter((t) => /^\+?include:|^redirect=/i.test(t))
  if (chain.length > 0) {
    return `SPF policy passes mail from the unused test address ${ip} through ${chain.map((t) => quote(t, 80)).join(', ')}: an included or redirected policy allows everyone (e.g. +all), so anyone may send as this domain.`
  }
  return `SPF policy passes mail from the unused test address ${ip}: anyone may send as this domain; end it with -all.`
}

function covers(network: string, prefix: string | undefined, ip: string): boolean {
  const type = isIPv6(network) ? 'ipv6' : 'ipv4'
  if (type !== (isIPv6(ip) ? 'ipv6' : 'ipv4')) return false
  try {
    const list = new BlockList()
    list.addSubnet(network, prefix === undefined ? (type === 'ipv6' ? 128 : 32) : Number(prefix), type)
    return list.check(ip, type)
  } catch {
    return false
  }
}

type Resolve = (name: string, type: string) => Promise<unknown>

/**
 * One DNS query per question across the IPv4 and IPv6 evaluations. Each caller gets a
 * fresh error, because mailauth writes its verdict onto the error object it receives.
 */
function memoize(dns: DnsResolver): Resolve {
  const answers = new Map<string, Promise<unknown>>()
  return (name, type) => {
    const key = `${type}:${name.toLowerCase()}`
    let answer = answers.get(key)
    if (!answer) {
      answer = dns.resolve(name, type)
      answer.catch(() => {})
      answers.set(key, answer)
    }
    return answer.then(
      (value) => (Array.isArray(value) ? value.slice() : value),
      (err) => {
        throw Object.assign(new Error((err as Error)?.message ?? String(err)), { code: errorCode(err) })
      },
    )
  }
}
