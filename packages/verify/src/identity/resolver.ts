import {
  DidPlcResolver,
  DidResolver,
  type Fetch,
  HandleResolver,
  PoorlyFormattedDidDocumentError,
  PoorlyFormattedDidError,
  UnsupportedDidMethodError,
} from '@atproto/identity'

/** The part of a DID document the checks read. */
export type DidDocument = { id: string; alsoKnownAs?: string[] }

/**
 * Resolves identities for the domain-control check. `resolveDid` resolves to null when
 * the directory says the DID does not exist, rejects with `InvalidDidDocumentError`
 * when what it holds is not a DID document, and rejects with anything else when it
 * could not answer (a temporary error).
 */
export interface IdentityResolver {
  resolveDid(did: string): Promise<DidDocument | null>
  /** The DID named by https://<handle>/.well-known/atproto-did, or undefined (any failure). */
  resolveHandleHttps(handle: string): Promise<string | undefined>
}

/** A definitive answer that the DID cannot be used: not a temporary error. */
export class InvalidDidDocumentError extends Error {
  override name = 'InvalidDidDocumentError'
}

export type IdentityResolverOptions = {
  /** The PLC directory, e.g. https://plc.directory, or http://127.0.0.1:<port> in tests. */
  plcUrl: string
  timeoutMs?: number
  /**
   * For did:web documents and handle well-knowns, whose hosts the attester chooses.
   * Defaults to @atproto/identity's SSRF-protected fetch (https only, public addresses);
   * pass globalThis.fetch only where every host is trusted (tests).
   */
  fetch?: Fetch
}

export function createIdentityResolver(opts: IdentityResolverOptions): IdentityResolver {
  const timeout = opts.timeoutMs ?? 3000
  const dids = new DidResolver({ plcUrl: opts.plcUrl, timeout, ...(opts.fetch ? { fetch: opts.fetch } : {}) })
  // The PLC URL is ours, not the attester's: it needs no SSRF guard, and the guard's refusal
  // of http: and loopback would rule out a local directory.
  dids.methods.set('plc', new DidPlcResolver(opts.plcUrl, timeout, undefined, opts.fetch ?? globalThis.fetch))
  const handles = new HandleResolver({ timeout, ...(opts.fetch ? { fetch: opts.fetch } : {}) })
  return {
    async resolveDid(did) {
      try {
        return await dids.resolve(did, true)
      } catch (err) {
        if (
          err instanceof PoorlyFormattedDidDocumentError ||
          err instanceof PoorlyFormattedDidError ||
          err instanceof UnsupportedDidMethodError
        ) {
          throw new InvalidDidDocumentError(err.message)
        }
        throw err
      }
    },
    resolveHandleHttps: (handle) => handles.resolveHttp(handle),
  }
}
