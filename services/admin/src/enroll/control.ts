import type { Pool } from '@atmos/db'
import { domainHolder } from '@atmos/enrolment'
import { type DnsResolver, describeDnsError, isAbsence } from '@atmos/verify'

// Step 1 of the wizard: before any key is issued, may this account enrol this domain, and
// what proves that it controls it? The labeler's domain_control check decides in the end
// (packages/verify); this tells the member at once what that check will want.

export type ControlRecord = { name: string; type: 'TXT'; value: string }

export type Control =
  /** Another account holds the domain: nothing else is said or done. */
  | { status: 'refused'; reason: string }
  /** The handle is the domain (nothing to publish), or `_atproto.<domain>` already names the DID (keep it). */
  | { status: 'proven'; by: 'handle' | 'dns-txt'; reason: string }
  /** Publish `record` (replacing what `_atproto.<domain>` holds now, if anything). */
  | { status: 'publish'; reason: string; record: ControlRecord; seen: string[] }
  /** DNS could not answer: publish `record` unless it is already there, and try again. */
  | { status: 'unknown'; reason: string; record: ControlRecord }

const normalize = (name: string) => name.trim().toLowerCase().replace(/\.$/, '')

/** True when the account's handle is the domain (a handle proves control of its own name). */
export function handleProvesControl(handle: string | null | undefined, domain: string): boolean {
  return !!handle && normalize(handle) === normalize(domain)
}

/** The `_atproto` TXT record that makes `domain` name `did`, as a handle's would. */
export function controlRecord(did: string, domain: string): ControlRecord {
  return { name: `_atproto.${domain}`, type: 'TXT', value: `did=${did}` }
}

/**
 * Whether `did` (with `handle`) may enrol `domain` and what proves its control: refused when
 * another account holds it (a live relay domain of another member, or another DID's verified
 * attestation); proven by the handle or an existing `_atproto` record; otherwise the record to
 * publish. `domain` is already normalized (checkDomain).
 */
export async function domainControl(
  sql: Pool,
  dns: Pick<DnsResolver, 'resolveTxt'>,
  input: { did: string; handle?: string | null | undefined; domain: string },
  opts: { timeoutMs?: number } = {},
): Promise<Control> {
  const { did, domain } = input
  const held = await domainHolder(sql, domain, { did }, { nameHolder: false })
  // The member's own live domain is a resumed enrolment, not a refusal.
  if (held && !held.startsWith(`${did} already holds`)) return { status: 'refused', reason: held }
  const record = controlRecord(did, domain)
  if (handleProvesControl(input.handle, domain)) {
    return {
      status: 'proven',
      by: 'handle',
      reason: `${domain} is your handle, which proves you control it; no _atproto record to add.`,
    }
  }
  let seen: string[]
  try {
    seen = (await bounded(dns.resolveTxt(record.name), opts.timeoutMs ?? 10_000)).map((s) => s.join(''))
  } catch (err) {
    if (!isAbsence(err)) {
      return {
        status: 'unknown',
        reason: `Could not read ${record.name} (${describeDnsError(err)}); try again. If it is not there yet, publish the record below.`,
        record,
      }
    }
    seen = []
  }
  const claims = seen.filter((r) => r.startsWith('did='))
  if (claims.length === 1 && claims[0] === record.value) {
    return { status: 'proven', by: 'dns-txt', reason: `${record.name} already names ${did}: keep it.` }
  }
  if (claims.length > 1) {
    return {
      status: 'publish',
      reason: `${record.name} holds ${claims.length} did= records, so it names no account: keep only "${record.value}".`,
      record,
      seen,
    }
  }
  if (claims.length === 1) {
    return {
      status: 'publish',
      reason: `${record.name} names ${claims[0]!.slice(4, 200)}, not ${did}: replace it with "${record.value}".`,
      record,
      seen,
    }
  }
  return {
    status: 'publish',
    reason: `${domain} is not your handle: publish ${record.name} TXT "${record.value}" to prove you control it.`,
    record,
    seen,
  }
}

function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEOUT' })), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}
