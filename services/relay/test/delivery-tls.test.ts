import assert from 'node:assert/strict'
import { createHash, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import type { Pool } from '@atmos/db'
import {
  MtaStsServer,
  type MxSink,
  type TestDnsServer,
  testCertificate,
  testCertificateAuthority,
} from '@atmos/testkit'
import {
  type DeliveryWorld,
  enqueueDelivery,
  eventually,
  final,
  recipient,
  seedMember,
  spoolMessage,
  startDelivery,
  startDeliveryWorld,
} from './delivery-helpers.ts'

// Outbound TLS policy against loopback peers: MX sinks with a certificate from a test CA the
// relay trusts (tlsCaFile), one with smtp-server's own self-signed certificate, one without
// STARTTLS; an HTTPS server for MTA-STS policies; a DNS server that sets the AD bit for the
// names a test marks secure (the relay runs with dnssec on, trusting it as a validating
// resolver). Each test uses its own recipient domain.

const ca = testCertificateAuthority()
const mxCert = ca.issue(['mx-a.tls.test', 'mx-d.tls.test'])
// A self-signed certificate no CA vouches for: only DANE-EE can make it verified.
const selfSigned = testCertificate()
const caCertSha256 = createHash('sha256').update(new X509Certificate(ca.cert).raw).digest('hex')
const selfSignedSpki = createHash('sha256')
  .update(new X509Certificate(readFileSync(selfSigned.certFile)).publicKey.export({ type: 'spki', format: 'der' }))
  .digest('hex')

const POLICY_DOMAINS = ['enforce-ok', 'enforce-badcert', 'enforce-nostarttls', 'enforce-notlisted', 'testing-badcert']
  .concat(['rt-ok', 'rt-nosupport', 'dane-sts', 'waived', 'rt-waived'])
  .map((d) => `${d}.example`)

let world: DeliveryWorld
let sql: Pool
let dns: TestDnsServer
let sinks: Record<string, MxSink>
let policies: MtaStsServer
let stopDelivery: () => Promise<void>
let memberId: number

before(async () => {
  policies = new MtaStsServer(ca.issue(POLICY_DOMAINS.map((d) => `mta-sts.${d}`)))
  const policyPort = await policies.start()
  const zone: Record<string, object> = {
    'mx-a.tls.test': { A: ['127.0.0.2'] },
    'mx-b.tls.test': { A: ['127.0.0.3'] },
    'mx-c.tls.test': { A: ['127.0.0.4'] },
    'mx-d.tls.test': { A: ['127.0.0.6'] },
    'mx-e.tls.test': { A: ['127.0.0.7'] },
    'mx-e-other.tls.test': { A: ['127.0.0.7'] },
    // The same sink as mx-d, under a name its certificate does not carry.
    'mx-d-alias.tls.test': { A: ['127.0.0.6'] },
  }
  for (const d of POLICY_DOMAINS) zone[`mta-sts.${d}`] = { A: ['127.0.0.1'] }
  world = await startDeliveryWorld(
    'delivery-tls',
    {
      // CA-issued certificate, REQUIRETLS advertised.
      a: { host: '127.0.0.2', tls: { cert: mxCert.cert, key: mxCert.key }, requireTls: true },
      // smtp-server's built-in self-signed certificate (for localhost).
      b: '127.0.0.3',
      // No STARTTLS at all.
      c: { host: '127.0.0.4', tls: false },
      // CA-issued certificate sent with the CA (for DANE-TA), no REQUIRETLS.
      d: { host: '127.0.0.6', tls: { cert: `${mxCert.cert}${ca.cert}`, key: mxCert.key } },
      // Self-signed: for DANE-EE.
      e: {
        host: '127.0.0.7',
        tls: { cert: readFileSync(selfSigned.certFile, 'utf8'), key: readFileSync(selfSigned.keyFile, 'utf8') },
      },
    },
    zone,
  )
  ;({ sql, dns, sinks } = world)
  const running = await startDelivery(
    world.env({
      ATMOS_RELAY_DELIVERY_TLS_CA_FILE: ca.certFile,
      ATMOS_RELAY_DELIVERY_MTA_STS_PORT: String(policyPort),
      ATMOS_RELAY_DELIVERY_MTA_STS_TIMEOUT: '2s',
      ATMOS_RELAY_DELIVERY_DNSSEC: 'true',
    }),
  )
  stopDelivery = running.stop
  memberId = await seedMember(sql, 'member.example')
})

after(async () => {
  await stopDelivery?.()
  await world?.close()
  await policies?.close()
})

function mx(domain: string, host: string, opts: { secure?: boolean } = {}) {
  dns.set(domain, { MX: [{ priority: 10, exchange: host }], ...(opts.secure ? { secure: true } : {}) })
}

/** Publishes an MTA-STS policy: the TXT record and the policy text. */
function sts(domain: string, mode: 'enforce' | 'testing' | 'none', mxPatterns: string[]) {
  dns.set(`_mta-sts.${domain}`, { TXT: ['v=STSv1; id=20261206'] })
  policies.policies.set(
    domain,
    ['version: STSv1', `mode: ${mode}`, ...mxPatterns.map((p) => `mx: ${p}`), 'max_age: 86400', ''].join('\r\n'),
  )
}

async function send(to: string, opts: { requireTls?: boolean; headers?: string[] } = {}) {
  const spooled = await spoolMessage(sql, { memberId, to, ...opts })
  await enqueueDelivery(world.prefix, [spooled.messageId])
  return spooled
}

type TlsColumn = {
  policy: string
  mode?: string
  version?: string
  cipher?: string
  verified: boolean
  failure?: string
  requireTls?: boolean
}

async function attempts(recipientId: number) {
  return sql<{ outcome: string; reply: string | null; enhanced_status: string | null; tls: TlsColumn | null }[]>`
    select outcome, reply, enhanced_status, tls from delivery_attempts where recipient_id = ${recipientId} order by id`
}

/** Waits for the recipient's first recorded attempt. */
function firstAttempt(recipientId: number) {
  return eventually(async () => (await attempts(recipientId))[0], 15_000, `an attempt for recipient ${recipientId}`)
}

describe('opportunistic TLS (no policy)', () => {
  it('uses STARTTLS without verifying the certificate and records the session', async () => {
    mx('plain.example', 'mx-b.tls.test')
    const { recipientId } = await send('user@plain.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.equal(a?.tls?.policy, 'opportunistic')
    assert.match(a?.tls?.version ?? '', /^TLSv1\.[23]$/)
    assert.ok(a?.tls?.cipher)
    assert.equal(a?.tls?.verified, false)
    assert.equal(sinks.b?.to('user@plain.example')[0]?.secure, true)
  })

  it('records verified true for a certificate that happens to verify', async () => {
    mx('plain-good.example', 'mx-a.tls.test')
    const { recipientId } = await send('user@plain-good.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.deepEqual([a?.tls?.policy, a?.tls?.verified], ['opportunistic', true])
  })

  it('sends in plain text to a host without STARTTLS, and records that', async () => {
    mx('plain-nostarttls.example', 'mx-c.tls.test')
    const { recipientId } = await send('user@plain-nostarttls.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.equal(a?.tls?.policy, 'opportunistic')
    assert.equal(a?.tls?.version, undefined)
    assert.equal(a?.tls?.verified, false)
    assert.match(a?.tls?.failure ?? '', /STARTTLS not offered/)
    assert.equal(sinks.c?.to('user@plain-nostarttls.example')[0]?.secure, false)
  })
})

describe('MTA-STS', () => {
  it('enforce with a valid certificate: delivered over verified TLS', async () => {
    mx('enforce-ok.example', 'mx-a.tls.test')
    sts('enforce-ok.example', 'enforce', ['mx-a.tls.test'])
    const { recipientId } = await send('user@enforce-ok.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.equal(a?.tls?.policy, 'mta-sts')
    assert.equal(a?.tls?.mode, 'enforce')
    assert.equal(a?.tls?.verified, true)
    assert.match(a?.tls?.version ?? '', /^TLSv1\.[23]$/)
    assert.ok(policies.requests.some((r) => r.host === 'mta-sts.enforce-ok.example'))
  })

  it('enforce with a certificate that does not verify: deferred, nothing sent', async () => {
    mx('enforce-badcert.example', 'mx-b.tls.test')
    sts('enforce-badcert.example', 'enforce', ['mx-b.tls.test'])
    const { recipientId } = await send('user@enforce-badcert.example')
    const a = await firstAttempt(recipientId)
    assert.equal(a.outcome, 'deferred')
    assert.match(a.reply ?? '', /^4\.7\.5 /)
    assert.equal(a.tls?.policy, 'mta-sts')
    assert.equal(a.tls?.verified, false)
    assert.match(a.tls?.failure ?? '', /certificate/)
    assert.equal((await recipient(sql, recipientId))?.state, 'deferred')
    assert.equal(sinks.b?.to('user@enforce-badcert.example').length, 0)
  })

  it('enforce with a host that offers no STARTTLS: deferred, never sent in plain text', async () => {
    mx('enforce-nostarttls.example', 'mx-c.tls.test')
    sts('enforce-nostarttls.example', 'enforce', ['mx-c.tls.test'])
    const { recipientId } = await send('user@enforce-nostarttls.example')
    const a = await firstAttempt(recipientId)
    assert.equal(a.outcome, 'deferred')
    assert.equal(a.tls?.verified, false)
    assert.ok(a.tls?.failure)
    assert.equal(sinks.c?.to('user@enforce-nostarttls.example').length, 0)
  })

  it('enforce with an MX host the policy does not name: deferred without connecting', async () => {
    mx('enforce-notlisted.example', 'mx-a.tls.test')
    sts('enforce-notlisted.example', 'enforce', ['*.elsewhere.test'])
    const sessions = sinks.a?.sessions ?? 0
    const { recipientId } = await send('user@enforce-notlisted.example')
    const a = await firstAttempt(recipientId)
    assert.equal(a.outcome, 'deferred')
    assert.match(a.reply ?? '', /not an MX host/)
    assert.equal(a.tls?.policy, 'mta-sts')
    assert.equal(sinks.a?.sessions, sessions)
    assert.equal(sinks.a?.to('user@enforce-notlisted.example').length, 0)
  })

  it('testing mode: delivered as opportunistic, the failure recorded', async () => {
    mx('testing-badcert.example', 'mx-b.tls.test')
    sts('testing-badcert.example', 'testing', ['mx-b.tls.test'])
    const { recipientId } = await send('user@testing-badcert.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.equal(a?.tls?.policy, 'mta-sts')
    assert.equal(a?.tls?.mode, 'testing')
    assert.equal(a?.tls?.verified, false)
    assert.match(a?.tls?.failure ?? '', /certificate/)
  })
})

describe('DANE', () => {
  it('DANE-EE match over authenticated DNS: delivered, verified, though no CA vouches for the certificate', async () => {
    mx('dane-ok.example', 'mx-e.tls.test', { secure: true })
    dns.set('_25._tcp.mx-e.tls.test', {
      TLSA: [{ usage: 3, selector: 1, matchingType: 1, data: selfSignedSpki }],
      secure: true,
    })
    const { recipientId } = await send('user@dane-ok.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.equal(a?.tls?.policy, 'dane')
    assert.equal(a?.tls?.verified, true)
  })

  it('a TLSA record that does not match: deferred, nothing sent', async () => {
    mx('dane-bad.example', 'mx-e-other.tls.test', { secure: true })
    dns.set('_25._tcp.mx-e-other.tls.test', {
      TLSA: [{ usage: 3, selector: 1, matchingType: 1, data: 'ab'.repeat(32) }],
      secure: true,
    })
    const { recipientId } = await send('user@dane-bad.example')
    const a = await firstAttempt(recipientId)
    assert.equal(a.outcome, 'deferred')
    assert.equal(a.tls?.policy, 'dane')
    assert.equal(a.tls?.verified, false)
    assert.match(a.tls?.failure ?? '', /no TLSA record matches/)
    assert.equal(sinks.e?.to('user@dane-bad.example').length, 0)
  })

  it('without the AD bit on the MX answer, TLSA records are ignored (opportunistic)', async () => {
    mx('dane-insecure.example', 'mx-e-other.tls.test')
    const { recipientId } = await send('user@dane-insecure.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.equal(a?.tls?.policy, 'opportunistic')
  })

  it('DANE takes precedence over MTA-STS', async () => {
    mx('dane-sts.example', 'mx-e.tls.test', { secure: true })
    // An enforced policy the host could not meet (no CA vouches for its certificate): DANE decides instead.
    sts('dane-sts.example', 'enforce', ['mx-e.tls.test'])
    const { recipientId } = await send('user@dane-sts.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.deepEqual([a?.tls?.policy, a?.tls?.verified], ['dane', true])
  })

  it('DANE-TA: a chain to the published trust anchor, naming the MX host, is verified', async () => {
    mx('dane-ta.example', 'mx-d.tls.test', { secure: true })
    dns.set('_25._tcp.mx-d.tls.test', {
      TLSA: [{ usage: 2, selector: 0, matchingType: 1, data: caCertSha256 }],
      secure: true,
    })
    const { recipientId } = await send('user@dane-ta.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.deepEqual([a?.tls?.policy, a?.tls?.verified], ['dane', true])
  })

  it('DANE-TA: a certificate that names neither the MX host nor the domain is refused', async () => {
    mx('dane-ta-alias.example', 'mx-d-alias.tls.test', { secure: true })
    dns.set('_25._tcp.mx-d-alias.tls.test', {
      TLSA: [{ usage: 2, selector: 0, matchingType: 1, data: caCertSha256 }],
      secure: true,
    })
    const { recipientId } = await send('user@dane-ta-alias.example')
    const a = await firstAttempt(recipientId)
    assert.equal(a.outcome, 'deferred')
    assert.match(a.tls?.failure ?? '', /names none of/)
    assert.equal(sinks.d?.to('user@dane-ta-alias.example').length, 0)
  })

  it('PKIX usages (0, 1) are unusable for SMTP: as if there were no TLSA records', async () => {
    mx('dane-pkix.example', 'mx-e-other.tls.test', { secure: true })
    dns.set('_25._tcp.mx-e-other.tls.test', {
      TLSA: [{ usage: 1, selector: 1, matchingType: 1, data: 'ab'.repeat(32) }],
      secure: true,
    })
    const { recipientId } = await send('user@dane-pkix.example')
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.equal(a?.tls?.policy, 'opportunistic')
  })
})

describe('TLS-Required: No (RFC 8689 section 5)', () => {
  it('delivers despite an enforced policy the host fails, recording the policy and the waiver', async () => {
    mx('waived.example', 'mx-b.tls.test')
    sts('waived.example', 'enforce', ['mx-b.tls.test'])
    const { recipientId } = await send('user@waived.example', { headers: ['TLS-Required: No'] })
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [a] = await attempts(recipientId)
    assert.equal(a?.tls?.policy, 'mta-sts')
    assert.equal(a?.tls?.verified, false)
    assert.equal((a?.tls as { tlsRequiredNo?: boolean } | null)?.tlsRequiredNo, true)
    assert.match(a?.tls?.failure ?? '', /certificate/)
  })

  it('is ignored when the message also asked for REQUIRETLS', async () => {
    mx('rt-waived.example', 'mx-b.tls.test')
    sts('rt-waived.example', 'enforce', ['mx-b.tls.test'])
    const { recipientId } = await send('user@rt-waived.example', { requireTls: true, headers: ['TLS-Required: No'] })
    const a = await firstAttempt(recipientId)
    assert.equal(a.outcome, 'deferred')
    assert.equal(sinks.b?.to('user@rt-waived.example').length, 0)
  })
})

describe('REQUIRETLS', () => {
  it('goes over verified TLS to a host that supports it, REQUIRETLS passed on MAIL FROM', async () => {
    mx('rt-ok.example', 'mx-a.tls.test')
    sts('rt-ok.example', 'enforce', ['mx-a.tls.test'])
    const { recipientId } = await send('user@rt-ok.example', { requireTls: true })
    assert.equal((await final(sql, recipientId)).state, 'delivered')
    const [got] = sinks.a?.to('user@rt-ok.example') ?? []
    assert.equal(got?.requireTls, true)
    const [a] = await attempts(recipientId)
    assert.deepEqual([a?.tls?.policy, a?.tls?.verified, a?.tls?.requireTls], ['mta-sts', true, true])
  })

  it('fails with 5.7.30 when the next hop does not support REQUIRETLS', async () => {
    mx('rt-nosupport.example', 'mx-d.tls.test')
    sts('rt-nosupport.example', 'enforce', ['mx-d.tls.test'])
    const { recipientId } = await send('user@rt-nosupport.example', { requireTls: true })
    const row = await final(sql, recipientId)
    assert.equal(row.state, 'bounced')
    assert.match(row.last_reply ?? '', /5\.7\.30/)
    assert.equal(sinks.d?.to('user@rt-nosupport.example').length, 0)
  })

  it('fails with 5.7.30 when no policy authenticates the MX host', async () => {
    mx('rt-nopolicy.example', 'mx-a.tls.test')
    const sessions = sinks.a?.sessions ?? 0
    const { recipientId } = await send('user@rt-nopolicy.example', { requireTls: true })
    const row = await final(sql, recipientId)
    assert.equal(row.state, 'bounced')
    assert.match(row.last_reply ?? '', /5\.7\.30/)
    const [a] = await attempts(recipientId)
    assert.equal(a?.enhanced_status, '5.7.30')
    assert.equal(a?.tls?.requireTls, true)
    assert.equal(sinks.a?.sessions, sessions)
  })
})
