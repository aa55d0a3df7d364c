/// <reference path="../mailauth.d.ts" />
import { createPublicKey, type KeyObject } from 'node:crypto'
import { parseTagList } from 'mailauth/lib/parse-dkim-headers.js'
import type { DnsResolver } from '../dns/resolver.ts'
import { lookup } from '../dns/resolver.ts'
import type { CheckResult } from '../types.ts'
import { CheckBuilder, clip, quote } from './result.ts'

/** Receivers reject shorter RSA keys (RFC 8301); 2048 bits is what they expect today. */
const MIN_RSA_BITS = 1024
const RECOMMENDED_RSA_BITS = 2048

type SelectorOutcome = {
  selector: string
  name: string
  outcome: CheckResult['outcome']
  problem?: string
  warnings: string[]
  details: Record<string, unknown>
}

/** Every declared selector must publish exactly one usable key. */
export async function checkDkim(domain: string, selectors: string[], dns: DnsResolver): Promise<CheckResult> {
  const c = new CheckBuilder('dkim')
  const results = await Promise.all(selectors.map((s) => checkSelector(domain, s, dns)))
  c.details.selectors = results.map(({ selector, name, outcome, details }) => ({ selector, name, outcome, ...details }))
  for (const r of results) for (const w of r.warnings) c.warn(w)

  const failed = results.filter((r) => r.outcome === 'fail')
  if (failed.length > 0) return c.fail(failed.map((r) => r.problem).join(' '))
  const unknown = results.filter((r) => r.outcome === 'temperror')
  if (unknown.length > 0) return c.temperror(unknown.map((r) => r.problem).join(' '))
  const list = selectors.map((s) => `"${s}"`).join(', ')
  return c.pass(`Every DKIM selector (${list}) publishes one usable key.`)
}

async function checkSelector(domain: string, selector: string, dns: DnsResolver): Promise<SelectorOutcome> {
  const name = `${selector}._domainkey.${domain}`
  const warnings: string[] = []
  const details: Record<string, unknown> = {}
  const done = (outcome: SelectorOutcome['outcome'], problem?: string): SelectorOutcome => ({
    selector,
    name,
    outcome,
    ...(problem ? { problem } : {}),
    warnings,
    details,
  })

  // Providers often delegate a selector by CNAME; the resolver follows it for TXT, and the
  // delegation itself is only noted (a failure to read it changes nothing).
  const [txt, cname] = await Promise.all([lookup(() => dns.resolveTxt(name)), lookup(() => dns.resolveCname(name))])
  if (cname.status === 'found' && cname.records[0]) details.delegatedTo = clip(cname.records[0], 255)
  if (txt.status === 'temperror')
    return done('temperror', `Could not read the DKIM key of selector "${selector}" at ${name}: ${txt.error}.`)
  if (txt.status === 'absent' || txt.records.length === 0) {
    return done(
      'fail',
      `DKIM selector "${selector}" has no key record at ${name}: publish its TXT record "v=DKIM1; k=rsa; p=…".`,
    )
  }

  // The strings of one record are joined without separators (RFC 6376 3.6.2.2).
  const records = txt.records.map((strings) => strings.join(''))
  const keys = records.filter(isKeyRecord)
  details.records = records.slice(0, 10).map((r) => clip(r))
  if (keys.length === 0) {
    return done(
      'fail',
      `The TXT record at ${name} is not a DKIM key (${quote(records[0] as string, 60)}): publish "v=DKIM1; k=rsa; p=…" for selector "${selector}".`,
    )
  }
  if (keys.length > 1) {
    return done(
      'fail',
      `Selector "${selector}" has ${keys.length} DKIM key records at ${name}: receivers cannot tell which one signs; keep exactly one.`,
    )
  }

  const { tags, syntaxErrors } = parseTagList(keys[0] as string)
  // Tag names are case-sensitive (RFC 6376 3.2): "P=" is not the key.
  const tag = (n: string) => tags.find((t) => t.name === n)?.value
  const duplicate = syntaxErrors.find((e) => e.startsWith('duplicate tag'))
  if (duplicate)
    return done(
      'fail',
      `The DKIM key record of selector "${selector}" is invalid (${duplicate}): each tag may appear once.`,
    )
  for (const e of syntaxErrors)
    warnings.push(`DKIM key record of selector "${selector}" has a syntax error (${clip(e, 80)}).`)

  const version = tag('v')
  if (version !== undefined && version !== 'DKIM1') {
    return done(
      'fail',
      `The DKIM key record of selector "${selector}" has v=${clip(version, 20)}; the only version is v=DKIM1.`,
    )
  }
  const services = tag('s')
    ?.toLowerCase()
    .split(':')
    .map((s) => s.trim())
  if (services && !services.includes('email') && !services.includes('*')) {
    return done(
      'fail',
      `The DKIM key of selector "${selector}" is restricted to s=${clip(tag('s') ?? '', 40)}, not email: remove s= or add "email".`,
    )
  }
  const hashes = tag('h')
    ?.toLowerCase()
    .split(':')
    .map((s) => s.trim())
  if (hashes && !hashes.includes('sha256')) {
    return done(
      'fail',
      `The DKIM key of selector "${selector}" allows only h=${clip(tag('h') ?? '', 40)}; receivers require sha256: remove h= or list sha256.`,
    )
  }

  const p = tag('p')
  if (p === undefined)
    return done(
      'fail',
      `The DKIM key record of selector "${selector}" is malformed: it has no p= tag holding the public key.`,
    )
  const keyData = p.replace(/\s+/g, '')
  if (keyData === '') {
    return done(
      'fail',
      `The DKIM key of selector "${selector}" is revoked (empty p=): publish the selector's current public key, or drop the selector from the attestation.`,
    )
  }

  const declared = (tag('k') ?? 'rsa').toLowerCase()
  if (declared !== 'rsa' && declared !== 'ed25519') {
    return done(
      'fail',
      `The DKIM key of selector "${selector}" has unknown key type k=${clip(declared, 20)}: use k=rsa or k=ed25519.`,
    )
  }
  const key = parseKey(keyData, declared)
  if (!key) {
    return done(
      'fail',
      `The DKIM key of selector "${selector}" is malformed: p= does not hold a valid ${declared === 'rsa' ? 'RSA' : 'Ed25519'} public key.`,
    )
  }
  details.keyType = declared
  if (declared === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    details.bits = bits
    if (bits < MIN_RSA_BITS) {
      return done(
        'fail',
        `The DKIM key of selector "${selector}" is a ${bits}-bit RSA key: receivers reject keys under ${MIN_RSA_BITS} bits; publish a ${RECOMMENDED_RSA_BITS}-bit key.`,
      )
    }
    if (bits < RECOMMENDED_RSA_BITS) {
      warnings.push(
        `The DKIM key of selector "${selector}" is a ${bits}-bit RSA key; ${RECOMMENDED_RSA_BITS} bits is recommended.`,
      )
    }
  }
  const flags = (tag('t') ?? '')
    .toLowerCase()
    .split(':')
    .map((f) => f.trim())
    .filter(Boolean)
  if (flags.length) details.flags = flags
  if (flags.includes('y')) {
    warnings.push(
      `DKIM selector "${selector}" is in testing mode (t=y): receivers may treat its signatures as absent; remove t=y.`,
    )
  }
  return done('pass')
}

/** A key record starts with v=DKIM1 or, since v= is optional, at least carries a p= tag. */
function isKeyRecord(record: string): boolean {
  const trimmed = record.trim()
  if (/^v\s*=\s*DKIM1\s*(;|$)/.test(trimmed)) return true
  if (/^v\s*=/.test(trimmed)) return false
  return /(^|;)\s*p\s*=/.test(trimmed)
}

const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** The key as node:crypto reads it, or null when p= is not a key of the declared type. */
function parseKey(base64: string, type: 'rsa' | 'ed25519'): KeyObject | null {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return null
  const der = Buffer.from(base64, 'base64')
  // RFC 8463 publishes the bare 32-byte Ed25519 key; RSA keys are SubjectPublicKeyInfo,
  // or occasionally the bare RSAPublicKey of RFC 3447.
  const candidates =
    type === 'ed25519' && der.length === 32
      ? [{ key: Buffer.concat([ED25519_SPKI_PREFIX, der]), type: 'spki' as const }]
      : [{ key: der, type: 'spki' as const }, ...(type === 'rsa' ? [{ key: der, type: 'pkcs1' as const }] : [])]
  for (const candidate of candidates) {
    try {
      const key = createPublicKey({ key: candidate.key, format: 'der', type: candidate.type })
      if (key.asymmetricKeyType === type) return key
    } catch {
      // try the next encoding
    }
  }
  return null
}
