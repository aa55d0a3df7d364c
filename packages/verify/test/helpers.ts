import assert from 'node:assert/strict'
import { after, before } from 'node:test'
import { type DnsZone, dkimPublicKey, goodMailZone, type TestDnsServer, withNames } from '@atmos/testkit'
import { type CheckResult, createDnsResolver, type DnsResolver, type IdentityResolver } from '../src/index.ts'

export const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
export const OTHER_DID = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'

export const dkimKey = dkimPublicKey

export const RSA_2048 = dkimKey('rsa', 2048)

/** Everything a domain needs to pass, under `domain`, with selector `atmos1`. */
export function goodZone(domain: string, did = DID): DnsZone {
  return goodMailZone(domain, did, RSA_2048)
}

export { withNames }

/**
 * A silent name costs a test this long before it turns into ETIMEOUT, but every answer must come
 * within it: the server shares the test's event loop, and with other test files running beside it
 * on a busy machine a loopback answer took over 300 ms (a `pass` became `temperror`). Idle time
 * is cheap; a wrong verdict is not.
 */
export function resolverFor(server: TestDnsServer, timeoutMs = 5000): DnsResolver {
  return createDnsResolver({ servers: ['127.0.0.1'], port: server.port, timeoutMs, tries: 1 })
}

/** An identity resolver for tests that do not exercise the handle path. */
export function staticIdentity(docs: Record<string, string[]> = {}): IdentityResolver {
  return {
    resolveDid: async (did) => ({ id: did, alsoKnownAs: docs[did] ?? [] }),
    resolveHandleHttps: async () => undefined,
  }
}

/** Runs `server` for the enclosing describe block; the resolver is ready once it has started. */
export function serveZone(server: TestDnsServer): () => DnsResolver {
  let dns: DnsResolver | undefined
  before(async () => {
    await server.start()
    dns = resolverFor(server)
  })
  after(() => server.close())
  return () => dns as DnsResolver
}

/** Asserts a check's outcome and reason (the reason is shown when the outcome differs). */
export async function expectCheck(
  run: Promise<CheckResult>,
  check: CheckResult['check'],
  outcome: CheckResult['outcome'],
  reason: RegExp,
  subject: string,
): Promise<CheckResult> {
  const result = await run
  assert.equal(result.check, check)
  assert.equal(result.outcome, outcome, `${subject}: ${result.reason}`)
  assert.match(result.reason, reason)
  return result
}
