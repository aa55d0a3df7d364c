import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { TestDnsServer } from '@atmos/testkit'
import { createDnsResolver, type DnsResolver } from '@atmos/verify'
import { CheckRateLimiter } from '../src/enroll/check.ts'
import { enrollSection } from '../src/enroll/config.ts'
import { controlRecord, handleProvesControl } from '../src/enroll/control.ts'
import { smtpSettings } from '../src/enroll/credentials.ts'
import { dmarcValue, recordsFor } from '../src/enroll/records.ts'
import { countLookups, LOOKUP_LIMIT, mergeSpf, parseSpf, planSpf } from '../src/enroll/spf.ts'
import { quoteTxtString, splitTxt, txtData } from '../src/enroll/txt.ts'

// The wizard's pure parts: TXT splitting, the SPF merge and its lookup count (over a loopback
// DNS server), the records of a domain, the DMARC string, control by handle, the settings shown
// with a credential.

const POOL = '_spf.pool.example'
const DID = 'did:plc:enrollunits0000000000000'

describe('TXT splitting', () => {
  it('keeps a value of up to 255 octets in one string and cuts at 255 octets', () => {
    assert.deepEqual(splitTxt(''), [''])
    assert.deepEqual(splitTxt('a'.repeat(255)), ['a'.repeat(255)])
    assert.deepEqual(splitTxt('a'.repeat(256)), ['a'.repeat(255), 'a'])
    const rsa = `v=DKIM1; k=rsa; p=${'A'.repeat(392)}`
    const parts = splitTxt(rsa)
    assert.equal(parts.join(''), rsa)
    assert.deepEqual(
      parts.map((p) => p.length),
      [255, rsa.length - 255],
    )
  })

  it('never cuts a multi-byte character: a string stays at most 255 octets', () => {
    // 254 ASCII octets then a 2-octet character: it would end at octet 256, so it starts the next string.
    const value = `${'a'.repeat(254)}é${'b'.repeat(10)}`
    const parts = splitTxt(value)
    assert.deepEqual(parts, ['a'.repeat(254), `é${'b'.repeat(10)}`])
    const emoji = '😀'.repeat(100) // 4 octets each: 63 fit in 252 octets
    const cut = splitTxt(emoji)
    assert.equal(cut.join(''), emoji)
    for (const p of cut) assert.ok(Buffer.byteLength(p) <= 255)
    assert.equal(Buffer.byteLength(cut[0]!), 252)
  })

  it('quotes strings as a zone file reads them', () => {
    assert.equal(quoteTxtString('v=spf1 -all'), '"v=spf1 -all"')
    assert.equal(quoteTxtString('a"b\\c'), '"a\\"b\\\\c"')
    assert.equal(quoteTxtString('é'), '"\\195\\169"')
    assert.equal(txtData('x'.repeat(300)), `"${'x'.repeat(255)}" "${'x'.repeat(45)}"`)
  })
})

describe('SPF merge', () => {
  it('without an SPF record proposes one that authorizes the pool alone, and says so', () => {
    const m = mergeSpf(['google-site-verification=abc'], POOL)
    assert.ok(m.ok)
    assert.equal(m.record, `v=spf1 include:${POOL} -all`)
    assert.equal(m.existing, null)
    assert.match(m.warnings.join(' '), /no SPF record yet/)
  })

  it("adds the include before all, keeping the author's terms in order; idempotent", () => {
    const m = mergeSpf(['v=spf1 ip4:192.0.2.0/24 include:_spf.google.com ~all'], POOL)
    assert.ok(m.ok && m.changed)
    assert.equal(m.record, `v=spf1 ip4:192.0.2.0/24 include:_spf.google.com include:${POOL} ~all`)
    const again = mergeSpf([m.record], POOL)
    assert.ok(again.ok)
    assert.equal(again.changed, false)
    assert.equal(again.record, m.record)
    // Case and a trailing dot do not make a second include.
    const upper = mergeSpf([`v=spf1 include:${POOL.toUpperCase()}. -all`], POOL)
    assert.ok(upper.ok)
    assert.equal(upper.changed, false)
  })

  it('with a redirect and no all, puts the include among the mechanisms, before the modifier', () => {
    const m = mergeSpf(['v=spf1 redirect=_spf.provider.example'], POOL)
    assert.ok(m.ok)
    assert.equal(m.record, `v=spf1 include:${POOL} redirect=_spf.provider.example`)
    const mixed = mergeSpf(['v=spf1 mx redirect=_spf.provider.example'], POOL)
    assert.ok(mixed.ok)
    assert.equal(mixed.record, `v=spf1 mx include:${POOL} redirect=_spf.provider.example`)
    // No "all" and no redirect: merged, with a warning that unlisted senders are neutral.
    const bare = mergeSpf(['v=spf1 mx'], POOL)
    assert.ok(bare.ok)
    assert.equal(bare.record, `v=spf1 mx include:${POOL}`)
    assert.match(bare.warnings.join(' '), /no "all" term/)
  })

  it('refuses two SPF records, never producing a second', () => {
    const m = mergeSpf(['v=spf1 mx -all', 'v=spf1 include:other.example -all'], POOL)
    assert.equal(m.ok, false)
    assert.match(!m.ok ? m.reason : '', /publishes 2 SPF records.*merge them into one/)
  })

  it('refuses an invalid record and says why', () => {
    for (const [record, why] of [
      ['v=spf1 ip4:999.1.1.1 -all', /not an IPv4 address/],
      ['v=spf1 foo:bar -all', /not an SPF mechanism/],
      ['v=spf1 redirect=a.example redirect=b.example', /redirect= modifier appears more than once/],
      ['v=spf1 include -all', /needs a domain/],
      ['v=spf1 all:x', /"all" takes none/],
    ] as const) {
      const m = mergeSpf([record], POOL)
      assert.equal(m.ok, false, record)
      assert.match(!m.ok ? m.reason : '', why, record)
    }
    assert.equal(parseSpf('v=spf2 -all').ok, false)
  })

  it('merges a record ending in +all but warns that the SPF check fails until it changes', () => {
    const m = mergeSpf(['v=spf1 mx +all'], POOL)
    assert.ok(m.ok)
    assert.equal(m.record, `v=spf1 mx include:${POOL} +all`)
    assert.match(m.warnings.join(' '), /authorizes every server/)
  })
})

describe('SPF lookup counting over loopback DNS', () => {
  const server = new TestDnsServer()
  let dns: DnsResolver

  before(async () => {
    await server.start()
    dns = createDnsResolver({ servers: [server.address], timeoutMs: 500, tries: 1 })
  })
  after(() => server.close())

  it('counts nested includes and redirects, not ip4/ip6/all', async () => {
    server.zone = {
      [POOL]: { TXT: ['v=spf1 ip4:203.0.113.0/24 include:_n1.pool.example -all'] },
      '_n1.pool.example': { TXT: ['v=spf1 a mx ip6:2001:db8::/32 -all'] },
      '_r.example': { TXT: ['v=spf1 include:_n1.pool.example -all'] },
    }
    // include(POOL)=1 + include(_n1)=1 + a + mx = 4
    assert.deepEqual(await countLookups(`v=spf1 include:${POOL} -all`, 'member.example', dns), {
      count: 4,
      complete: true,
      problems: [],
    })
    // redirect (1) + include (1) + a, mx (2) = 4; mx here (1) = 5
    const r = await countLookups('v=spf1 mx redirect=_r.example', 'member.example', dns)
    assert.equal(r.count, 5)
    assert.ok(r.complete)
  })

  it('stops at a loop and says where', async () => {
    server.zone = {
      'loop-a.example': { TXT: ['v=spf1 include:loop-b.example -all'] },
      'loop-b.example': { TXT: ['v=spf1 include:loop-a.example -all'] },
    }
    const r = await countLookups('v=spf1 include:loop-a.example -all', 'member.example', dns)
    assert.equal(r.complete, false)
    assert.match(r.problems.join(' '), /loop-a\.example → loop-b\.example → loop-a\.example is a loop/)
  })

  it('warns when the merged record needs more than 10 lookups', async () => {
    const zone: Record<string, { TXT: string[] }> = { [POOL]: { TXT: ['v=spf1 ip4:203.0.113.0/24 -all'] } }
    for (let i = 0; i < 5; i++) zone[`_p${i}.provider.example`] = { TXT: ['v=spf1 a mx -all'] }
    zone['many.example'] = {
      TXT: [`v=spf1 ${[0, 1, 2, 3, 4].map((i) => `include:_p${i}.provider.example`).join(' ')} ~all`],
    }
    server.zone = zone
    const plan = await planSpf('many.example', POOL, dns)
    assert.ok(plan.ok)
    // 5 includes × (1 + a + mx) = 15, plus the pool's include = 16
    assert.equal(plan.lookups?.count, 16)
    assert.ok((plan.lookups?.count ?? 0) > LOOKUP_LIMIT)
    assert.match(plan.warnings.join(' '), /needs 16 DNS lookups; receivers stop at 10/)
    // Under the limit: no such warning.
    server.set('few.example', { TXT: ['v=spf1 include:_p0.provider.example -all'] })
    const few = await planSpf('few.example', POOL, dns)
    assert.ok(few.ok)
    assert.equal(few.lookups?.count, 4)
    assert.doesNotMatch(few.warnings.join(' '), /DNS lookups/)
  })

  it('a missing include target or a DNS failure makes the count incomplete; SERVFAIL on the domain is "try again"', async () => {
    server.zone = { 'gone.example': { TXT: ['v=spf1 include:nowhere.example -all'] } }
    const r = await countLookups('v=spf1 include:nowhere.example -all', 'gone.example', dns)
    assert.equal(r.count, 1)
    assert.equal(r.complete, false)
    assert.match(r.problems.join(' '), /nowhere\.example publishes no SPF record/)
    server.set('broken.example', { behaviour: 'servfail' })
    const plan = await planSpf('broken.example', POOL, dns)
    assert.equal(plan.ok, false)
    assert.match(!plan.ok ? plan.reason : '', /try again/)
  })

  it('is bounded in depth and in time', async () => {
    const zone: Record<string, { TXT: string[] } | { behaviour: 'timeout' }> = {}
    for (let i = 0; i < 20; i++) zone[`d${i}.example`] = { TXT: [`v=spf1 include:d${i + 1}.example -all`] }
    server.zone = zone
    const deep = await countLookups('v=spf1 include:d0.example -all', 'member.example', dns, { maxDepth: 5 })
    assert.equal(deep.complete, false)
    assert.match(deep.problems.join(' '), /deeper than 5 levels/)
    server.zone = { 'slow.example': { behaviour: 'timeout' } }
    const started = Date.now()
    const slow = await countLookups('v=spf1 include:slow.example -all', 'member.example', dns, { timeoutMs: 300 })
    assert.ok(Date.now() - started < 2000)
    assert.equal(slow.complete, false)
  })
})

describe('records for a domain', () => {
  const keys = [
    { selector: 'atmos1r', txt: `v=DKIM1; k=rsa; p=${'M'.repeat(392)}` },
    { selector: 'atmos1e', txt: `v=DKIM1; k=ed25519; p=${'e'.repeat(44)}` },
  ]
  const config = enrollSection.parse({})

  it('the DMARC string: quarantine or reject, relaxed DKIM alignment, rua only when configured', () => {
    assert.equal(dmarcValue('quarantine'), 'v=DMARC1; p=quarantine; adkim=r')
    assert.equal(dmarcValue('reject', ''), 'v=DMARC1; p=reject; adkim=r')
    assert.equal(
      dmarcValue('reject', 'dmarc@pool.example'),
      'v=DMARC1; p=reject; adkim=r; rua=mailto:dmarc@pool.example',
    )
    assert.equal(
      dmarcValue('reject', 'mailto:dmarc@pool.example'),
      'v=DMARC1; p=reject; adkim=r; rua=mailto:dmarc@pool.example',
    )
  })

  it('lists both DKIM keys split into strings, SPF, DMARC and the _atproto record when the handle does not prove control', () => {
    const records = recordsFor(
      { did: DID, domain: 'member.example', keys, spf: `v=spf1 include:${POOL} -all`, handleProvesControl: false },
      { ...config, dmarcRua: 'dmarc@pool.example' },
    )
    assert.deepEqual(
      records.map((r) => [r.purpose, r.name, r.type]),
      [
        ['dkim', 'atmos1r._domainkey.member.example', 'TXT'],
        ['dkim', 'atmos1e._domainkey.member.example', 'TXT'],
        ['spf', 'member.example', 'TXT'],
        ['dmarc', '_dmarc.member.example', 'TXT'],
        ['domain_control', '_atproto.member.example', 'TXT'],
      ],
    )
    const rsa = records[0]!
    assert.deepEqual(rsa.strings, splitTxt(keys[0]!.txt))
    assert.equal(rsa.strings!.length, 2)
    assert.equal(
      rsa.zoneLine,
      `atmos1r._domainkey.member.example. IN TXT "${keys[0]!.txt.slice(0, 255)}" "${keys[0]!.txt.slice(255)}"`,
    )
    assert.equal(records[3]!.value, 'v=DMARC1; p=quarantine; adkim=r; rua=mailto:dmarc@pool.example')
    assert.equal(records[4]!.zoneLine, `_atproto.member.example. IN TXT "did=${DID}"`)
  })

  it('leaves out the _atproto record when the handle is the domain, rua when not configured; offers the MX when configured', () => {
    const records = recordsFor(
      { did: DID, domain: 'member.example', keys, spf: `v=spf1 include:${POOL} -all`, handleProvesControl: true },
      { ...config, dmarcPolicy: 'reject', mxHost: 'inbound.pool.example.' },
    )
    assert.equal(
      records.find((r) => r.purpose === 'domain_control'),
      undefined,
    )
    assert.equal(records.find((r) => r.purpose === 'dmarc')!.value, 'v=DMARC1; p=reject; adkim=r')
    const mx = records.find((r) => r.purpose === 'mx')!
    assert.equal(mx.zoneLine, 'member.example. IN MX 10 inbound.pool.example.')
    assert.equal(mx.required, false)
  })
})

describe('control by handle', () => {
  it('a handle proves control of its own name only', () => {
    assert.equal(handleProvesControl('Member.Example.', 'member.example'), true)
    assert.equal(handleProvesControl('alice.member.example', 'member.example'), false)
    assert.equal(handleProvesControl(null, 'member.example'), false)
    assert.deepEqual(controlRecord(DID, 'member.example'), {
      name: '_atproto.member.example',
      type: 'TXT',
      value: `did=${DID}`,
    })
  })
})

describe('credential settings', () => {
  it('STARTTLS: an smtp:// URL that requires TLS, user and password percent-encoded', () => {
    const s = smtpSettings(
      { relayHost: 'relay.pool.example', relayPort: 587, relayTlsPort: 0 },
      { username: 'member.example', password: 'p@ss:w/rd' },
    )
    assert.equal(s.security, 'starttls')
    const line = s.pdsEnv[0]!
    assert.match(line, /^PDS_EMAIL_SMTP_URL=smtp:\/\//)
    const url = new URL(line.slice('PDS_EMAIL_SMTP_URL='.length))
    assert.equal(decodeURIComponent(url.username), 'member.example')
    assert.equal(decodeURIComponent(url.password), 'p@ss:w/rd')
    assert.equal(url.port, '587')
    assert.equal(url.searchParams.get('requireTLS'), 'true')
    assert.ok(s.generic.some((l) => /STARTTLS, required/.test(l)))
  })

  it('implicit TLS when the relay has a TLS port: smtps://', () => {
    const s = smtpSettings(
      { relayHost: 'relay.pool.example', relayPort: 587, relayTlsPort: 465 },
      { username: 'member.example', password: 'x' },
    )
    assert.equal(s.port, 465)
    assert.match(s.pdsEnv[0]!, /^PDS_EMAIL_SMTP_URL=smtps:\/\/member\.example:x@relay\.pool\.example:465\/$/)
  })
})

describe('check-now rate limit', () => {
  it('allows the limit per DID per window, then says when', () => {
    let now = 0
    const limiter = new CheckRateLimiter(2, 60_000, () => now)
    assert.deepEqual(limiter.take('did:plc:a'), { ok: true })
    assert.deepEqual(limiter.take('did:plc:a'), { ok: true })
    assert.deepEqual(limiter.take('did:plc:a'), { ok: false, retryAfterMs: 60_000 })
    assert.deepEqual(limiter.take('did:plc:b'), { ok: true })
    now = 60_000
    assert.deepEqual(limiter.take('did:plc:a'), { ok: true })
  })
})
