import type { DnsResolver } from '../dns/resolver.ts'
import { lookup } from '../dns/resolver.ts'
import { type DidDocument, type IdentityResolver, InvalidDidDocumentError } from '../identity/resolver.ts'
import type { CheckResult } from '../types.ts'
import { CheckBuilder, clip, quote } from './result.ts'

type DidLookup =
  | { status: 'found'; doc: DidDocument }
  | { status: 'missing'; why: string }
  | { status: 'temperror'; why: string }

/**
 * The account controls the domain when either
 *  - the domain is the account's handle: the DID document claims at://<domain> and the
 *    handle resolves back to the DID (`_atproto.<domain>` TXT, or the HTTPS well-known), or
 *  - `_atproto.<domain>` holds `did=<the DID>`, as a handle would, without being the handle.
 * The TXT record is checked the way atproto resolves handles: exactly one did= record.
 *
 * When `_atproto.<domain>` holds a did= record it decides alone: the HTTPS well-known is
 * asked only when DNS says there is none. Otherwise whoever controls just the web root
 * would outrank the DNS owner, and two DIDs could verify one domain. A DNS lookup that
 * failed (SERVFAIL, timeout) says nothing about the record, so it never lets HTTPS decide.
 */
export async function checkDomainControl(
  did: string,
  domain: string,
  deps: { dns: DnsResolver; identity: IdentityResolver },
): Promise<CheckResult> {
  const c = new CheckBuilder('domain_control')
  const name = `_atproto.${domain}`
  const publish = `publish the TXT record ${name} "did=${did}"`

  const [txt, doc] = await Promise.all([lookup(() => deps.dns.resolveTxt(name)), resolveDid(did, deps.identity)])

  const records = txt.status === 'found' ? txt.records.map((strings) => strings.join('')) : []
  const claims = records.filter((r) => r.startsWith('did=')).map((r) => r.slice(4))
  c.details.txtName = name
  c.details.txt = records.slice(0, 10).map((r) => clip(r))
  const txtMatches = claims.length === 1 && claims[0] === did

  const handles = doc.status === 'found' ? (doc.doc.alsoKnownAs ?? []).filter((a) => a.startsWith('at://')) : []
  c.details.handles = handles.slice(0, 10).map((h) => clip(h, 260))
  const handleIsDomain = handles.some((h) => h.slice(5).toLowerCase() === domain)

  if (txtMatches) {
    c.details.method = handleIsDomain ? 'handle' : 'dns-txt'
    return c.pass(
      handleIsDomain
        ? `${domain} is the handle of ${did} and resolves back to it through ${name}.`
        : `${name} names ${did}.`,
    )
  }
  if (claims.length > 1) {
    return c.fail(`${name} holds ${claims.length} did= records, so it names no account: keep only "did=${did}".`)
  }
  if (claims.length === 1) {
    return c.fail(`${name} names ${quote(clip(claims[0] as string, 100))}, not ${did}: ${publish}.`)
  }
  if (txt.status === 'temperror') return c.temperror(`Could not read ${name}: ${txt.error}.`)
  if (handleIsDomain) {
    // DNS says there is no did= record: the handle's second way back to the DID decides.
    const viaHttps = await deps.identity.resolveHandleHttps(domain).catch(() => undefined)
    if (viaHttps === did) {
      c.details.method = 'handle'
      c.details.wellKnown = did
      return c.pass(
        `${domain} is the handle of ${did} and resolves back to it through https://${domain}/.well-known/atproto-did.`,
      )
    }
  }
  // Nothing proves control yet; if the directory could not answer, the answer may still come.
  if (doc.status === 'temperror') {
    return c.temperror(`Could not resolve ${did} to check whether ${domain} is its handle: ${doc.why}.`)
  }
  if (doc.status === 'missing') {
    return c.fail(`${did} could not be resolved (${doc.why}) and ${name} does not name it: ${publish}.`)
  }
  if (handleIsDomain) {
    return c.fail(`${domain} is the handle claimed by ${did}, but it does not resolve back to it: ${publish}.`)
  }
  return c.fail(`${domain} is not the handle of ${did} and ${name} does not name it: ${publish}.`)
}

async function resolveDid(did: string, identity: IdentityResolver): Promise<DidLookup> {
  try {
    const doc = await identity.resolveDid(did)
    return doc ? { status: 'found', doc } : { status: 'missing', why: 'the directory does not know it' }
  } catch (err) {
    if (err instanceof InvalidDidDocumentError) return { status: 'missing', why: 'its DID document is invalid' }
    return {
      status: 'temperror',
      why: `the DID directory did not answer (${clip(String((err as Error)?.message ?? err), 120)})`,
    }
  }
}
