import { spawn, spawnSync } from 'node:child_process'
import { Resolver } from 'node:dns/promises'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { closedPort, dkimPublicKey } from '@atmos/testkit'
import { createDnsResolver, type DnsResolver, type IdentityResolver, verifyAttestation } from '@atmos/verify'
import type { Figure } from './report.ts'

/** The zones of `domains` passing mail domains as a dnsmasq configuration. */
function dnsmasqConfig(domains: number): string {
  const key = dkimPublicKey('rsa', 2048)
  // TXT strings are at most 255 bytes: the key record is split, as real zones do.
  const dkim = `"v=DKIM1; k=rsa; p=${key.slice(0, 200)}","${key.slice(200)}"`
  const lines = ['no-resolv', 'no-hosts', 'local=/bench.example/', 'cache-size=0']
  for (let i = 0; i < domains; i++) {
    const d = `d${i}.bench.example`
    lines.push(
      `mx-host=${d},mx.${d},10`,
      `host-record=mx.${d},198.51.100.25,2001:db8:25::25`,
      `txt-record=${d},"v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:25::/48 -all"`,
      `txt-record=atmos1._domainkey.${d},${dkim}`,
      `txt-record=_dmarc.${d},"v=DMARC1; p=reject; rua=mailto:dmarc@${d}"`,
      `txt-record=_atproto.${d},"did=did:plc:bench${i}"`,
    )
  }
  return `${lines.join('\n')}\n`
}

/**
 * A loopback DNS server in another process: Debian's dnsmasq when installed (a C server,
 * so that the figure is the verifier's, not the test server's), else our test server.
 */
async function startDns(domains: number): Promise<{ port: number; name: string; stop: () => void }> {
  const port = await closedPort()
  if (spawnSync('which', ['dnsmasq']).status === 0) {
    const conf = join(mkdtempSync(join(tmpdir(), 'atmos-dnsmasq-')), 'bench.conf')
    writeFileSync(conf, dnsmasqConfig(domains))
    const child = spawn(
      'dnsmasq',
      [
        '--keep-in-foreground',
        `--conf-file=${conf}`,
        `--port=${port}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--user=root',
      ],
      {
        stdio: 'ignore',
      },
    )
    // Ready when it answers, not after a guessed delay.
    const probe = new Resolver({ timeout: 200, tries: 1 })
    probe.setServers([`127.0.0.1:${port}`])
    const deadline = Date.now() + 15_000
    while (
      !(await probe.resolveTxt('_atproto.d0.bench.example').then(
        () => true,
        () => false,
      ))
    ) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error('dnsmasq did not answer')
    }
    return { port, name: 'dnsmasq', stop: () => child.kill('SIGTERM') }
  }
  const child = spawn(process.execPath, [fileURLToPath(new URL('./dns-child.ts', import.meta.url)), String(domains)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const childPort = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(JSON.parse(String(d)).port))
    child.once('exit', (code) => reject(new Error(`dns child exited ${code}`)))
  })
  return {
    port: childPort,
    name: 'test DNS server (install dnsmasq for a faster one)',
    stop: () => child.kill('SIGTERM'),
  }
}

type Lookup = { method: keyof DnsResolver; name: string; type?: string }

/** The resolver calls one verification makes, recorded so the floor repeats exactly them. */
function recording(dns: DnsResolver, log: Lookup[]): DnsResolver {
  const wrap =
    <K extends keyof DnsResolver>(method: K) =>
    (name: string, type?: string) => {
      log.push({ method, name, type })
      return (dns[method] as (n: string, t?: string) => Promise<unknown>)(name, type)
    }
  return {
    resolveTxt: wrap('resolveTxt'),
    resolveMx: wrap('resolveMx'),
    resolve4: wrap('resolve4'),
    resolve6: wrap('resolve6'),
    resolveCname: wrap('resolveCname'),
    resolve: wrap('resolve'),
  } as DnsResolver
}

/** `concurrency` loops over the domains for `seconds`; domains done per second. */
async function loop(
  domains: number,
  concurrency: number,
  seconds: number,
  one: (n: number) => Promise<void>,
): Promise<{ rate: number; done: number }> {
  let done = 0
  const deadline = Date.now() + seconds * 1000
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      let i = w
      while (Date.now() < deadline) {
        await one(i++ % domains)
        done++
      }
    }),
  )
  return { rate: done / ((performance.now() - t0) / 1000), done }
}

/**
 * Full verifications (all five checks) per second against a loopback DNS server in another
 * process, beside the floor: the same DNS lookups through a plain node:dns resolver, at the
 * same concurrency, with no checks. The ratio is what the checks leave of the lookups' rate.
 */
export async function benchVerify(domains: number, concurrency: number, seconds: number): Promise<Figure[]> {
  const server = await startDns(domains)
  try {
    const port = server.port
    const dns = createDnsResolver({ servers: ['127.0.0.1'], port, timeoutMs: 2000, tries: 1 })
    // Domain control passes by the _atproto TXT record; the DID directory is not part of this figure.
    const identity: IdentityResolver = {
      resolveDid: async (did) => ({ id: did, alsoKnownAs: [] }),
      resolveHandleHttps: async () => undefined,
    }
    const verify = (n: number, resolver: DnsResolver) =>
      verifyAttestation(
        { did: `did:plc:bench${n}`, domain: `d${n}.bench.example`, dkimSelectors: ['atmos1'] },
        { dns: resolver, identity },
      )
    const lookups: Lookup[] = []
    await verify(0, recording(dns, lookups))
    const plain = new Resolver({ timeout: 2000, tries: 1 })
    plain.setServers([`127.0.0.1:${port}`])
    const floorRun = await loop(domains, concurrency, seconds, async (n) => {
      for (const l of lookups) {
        const name = l.name.replace('d0.bench.example', `d${n}.bench.example`)
        const call =
          l.method === 'resolve'
            ? plain.resolve(name, l.type as 'TXT')
            : (plain[l.method] as (n: string) => Promise<unknown>).call(plain, name)
        await call.catch(() => undefined)
      }
    })

    let passed = 0
    const failures = new Map<string, number>()
    const ours = await loop(domains, concurrency, seconds, async (n) => {
      const r = await verify(n, dns)
      if (r.outcome === 'pass') passed++
      else failures.set(r.reason.slice(0, 120), (failures.get(r.reason.slice(0, 120)) ?? 0) + 1)
    })
    return [
      {
        name: `verifications, ${concurrency} at once`,
        value: ours.rate,
        unit: 'domains/s',
        reference: { name: `the same ${lookups.length} lookups, node:dns, no checks`, value: floorRun.rate },
        // No target: what the checks cost beside the lookups is the figure (the ratio).
        note: `${passed}/${ours.done} passed, against ${server.name}; lookups: ${lookups.map((l) => `${l.method}${l.type ? `(${l.type})` : ''}`).join(', ')}${failures.size ? `; not passed: ${JSON.stringify([...failures].slice(0, 2))}` : ''}`,
      },
    ]
  } finally {
    server.stop()
  }
}
