import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createDnsResolver, type IdentityResolver, verifyAttestation } from '@atmos/verify'
import type { Figure } from './report.ts'

/** Full verifications (all five checks) per second against a loopback DNS server in another process. */
export async function benchVerify(domains: number, concurrency: number, seconds: number): Promise<Figure[]> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./dns-child.ts', import.meta.url)), String(domains)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (d) => resolve(JSON.parse(String(d)).port))
      child.once('exit', (code) => reject(new Error(`dns child exited ${code}`)))
    })
    const dns = createDnsResolver({ servers: ['127.0.0.1'], port, timeoutMs: 2000, tries: 1 })
    // Domain control passes by the _atproto TXT record; the DID directory is not part of this figure.
    const identity: IdentityResolver = {
      resolveDid: async (did) => ({ id: did, alsoKnownAs: [] }),
      resolveHandleHttps: async () => undefined,
    }
    let done = 0
    let passed = 0
    const deadline = Date.now() + seconds * 1000
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: concurrency }, async (_, w) => {
        let i = w
        while (Date.now() < deadline) {
          const n = i++ % domains
          const r = await verifyAttestation(
            { did: `did:plc:bench${n}`, domain: `d${n}.bench.example`, dkimSelectors: ['atmos1'] },
            { dns, identity },
          )
          done++
          if (r.outcome === 'pass') passed++
        }
      }),
    )
    const elapsed = (performance.now() - t0) / 1000
    return [
      {
        name: `verifications, ${concurrency} at once`,
        value: done / elapsed,
        unit: 'domains/s',
        target: { op: '>=', value: 500 },
        note: `${passed}/${done} passed`,
      },
    ]
  } finally {
    child.kill('SIGTERM')
  }
}
