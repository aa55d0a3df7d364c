import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createDb } from '@atmos/db'
import { memberStatusChanged, TypedQueue } from '@atmos/queues'
import { setDomainStatus } from '@atmos/reputation'
import { hashPassword } from '@atmos/secrets'
import { TestDnsServer } from '@atmos/testkit'
import { authenticate } from 'mailauth'
import { type AddedDomain, removeDomain } from '../src/domains/store.ts'
import type { AddedMember } from '../src/members/store.ts'
import { fieldValue, parseMessage } from '../src/message/headers.ts'
import {
  addMemberDomain,
  createMember,
  dkimZone,
  dnsResolverFor,
  type Harness,
  POOL_DOMAIN,
  poolPublicKey,
  refusal,
  rfc822,
  setHolds,
  spooled,
  startSubmission,
  submitRaw,
} from './helpers.ts'

// A member with several domains: each is admitted on its own (its attestation, its status,
// the credential's scope), signed with its own two keys plus the pool's, and capped on its own.

const VERIFIER = fileURLToPath(new URL('../../../packages/dkim/test/dkimverify.py', import.meta.url))

/** Each message's signatures as python3-dkim judges them (a verifier that is not mailauth). */
function pythonVerify(messages: Buffer[], records: Record<string, string>): Promise<boolean[][]> {
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/python3', [VERIFIER, JSON.stringify(records)], (err, stdout, stderr) =>
      err
        ? reject(new Error(stderr || err.message))
        : resolve((JSON.parse(stdout) as Array<Array<{ pass: boolean }>>).map((v) => v.map((r) => r.pass))),
    )
    child.stdin!.end(JSON.stringify(messages.map((m) => m.toString('base64'))))
  })
}

/** A credential of the member not scoped to a domain (null domain_id: any domain it holds). */
async function unscopedCredential(h: Harness, member: { id: number }, username: string) {
  const password = `pw-${username}-0123456789abcdef`
  await h.sql`
    insert into smtp_credentials (member_id, domain_id, username, password_hash)
    values (${member.id}, null, ${username}, ${await hashPassword(password)})`
  return { username, password }
}

const send = (h: Harness, who: { username: string; password: string }, from: string, to: string[], header = from) =>
  submitRaw(h.port, who, { from, to }, rfc822({ From: header, To: to[0]!, Subject: 'hello' }, 'Hello.\r\n'))

describe('relay submission, a member with two domains', () => {
  let h: Harness
  let ana: AddedMember
  let anaTwo: AddedDomain
  let anaAll: { username: string; password: string }
  let dns: TestDnsServer
  let records: Record<string, string>

  before(async () => {
    h = await startSubmission({ ATMOS_RELAY_SUBMISSION_WARMING_TIERS: '0:8,3:200' })
    ana = await createMember(h, 'ana.example')
    anaTwo = await addMemberDomain(h, ana, 'ana-two.example')
    anaAll = await unscopedCredential(h, ana, 'ana-any')
    const zone = {
      ...dkimZone(ana, anaTwo),
      'pool1._domainkey.pool.example': { TXT: [`v=DKIM1; k=rsa; p=${await poolPublicKey(h.sql)}`] },
      '_dmarc.ana.example': { TXT: ['v=DMARC1; p=reject'] },
      '_dmarc.ana-two.example': { TXT: ['v=DMARC1; p=reject'] },
    }
    records = Object.fromEntries(Object.entries(zone).map(([name, r]) => [name, r.TXT[0]!]))
    dns = new TestDnsServer(zone)
    await dns.start()
  })
  after(async () => {
    await dns?.close()
    await h?.close()
  })

  const verify = (body: Buffer, returnPath: string) =>
    authenticate(body, {
      ip: '198.51.100.7',
      helo: 'relay.pool.example',
      sender: returnPath,
      mta: 'mx.dest.example',
      resolver: dnsResolverFor(dns.address) as never,
    })

  it('signs a message from each domain three times (its RSA and Ed25519 keys, the pool), each signature verifying on its own', async () => {
    await send(h, ana, 'a@ana.example', ['one@dest.example'])
    await send(h, anaTwo, 'a@ana-two.example', ['two@dest.example'])
    const rows = (await spooled(h.sql)).filter((r) => ['one@dest.example', 'two@dest.example'].includes(r.address))
    assert.equal(rows.length, 2)
    for (const [row, added] of [
      [rows[0]!, ana],
      [rows[1]!, anaTwo],
    ] as const) {
      assert.equal(row.memberId, ana.id)
      assert.equal(row.domainId, added.domainId, 'messages.domain_id names the domain sent as')
      const auth = await verify(row.body, row.returnPath)
      assert.deepEqual(
        auth.dkim.results.map((r) => [r.signingDomain, r.selector, r.algo, r.status.result]),
        [
          [added.domain, 'atmos1r', 'rsa-sha256', 'pass'],
          [added.domain, 'atmos1e', 'ed25519-sha256', 'pass'],
          [POOL_DOMAIN, 'pool1', 'rsa-sha256', 'pass'],
        ],
      )
      assert.ok(auth.dmarc)
      assert.equal(auth.dmarc.status.result, 'pass')
      assert.equal(auth.dmarc.alignment.dkim.result, added.domain)
      // Each signature alone: the message with only that DKIM-Signature still verifies.
      const parsed = parseMessage(row.body)
      const signatures = parsed.fields.filter((f) => f.key === 'dkim-signature')
      assert.equal(signatures.length, 3)
      // The signatures are the topmost fields (each line ends in CRLF, which raw leaves out).
      const unsigned = row.body.subarray(signatures.reduce((n, f) => n + f.raw.length + 2, 0))
      assert.ok(unsigned.toString('latin1').startsWith('Received:'))
      for (const sig of signatures) {
        const alone = Buffer.concat([sig.raw, Buffer.from('\r\n'), unsigned])
        const one = await verify(alone, row.returnPath)
        assert.deepEqual(
          one.dkim.results.map((r) => r.status.result),
          ['pass'],
          fieldValue(sig),
        )
      }
      assert.deepEqual(await pythonVerify([row.body], records), [[true, true, true]])
    }
  })

  it("refuses a domain whose attestation does not hold now at MAIL FROM, while the member's other domain sends", async () => {
    await setHolds(h.sql, ana.did, 'ana-two.example', false)
    try {
      for (const who of [anaTwo, anaAll]) {
        const err = await refusal(send(h, who, 'a@ana-two.example', ['x@dest.example']))
        assert.equal(
          err.response,
          "550 5.7.1 ana-two.example's attestation does not verify now: fix its DNS and attestation, then retry",
        )
        assert.equal(err.command, 'MAIL FROM')
      }
      assert.match((await send(h, anaAll, 'a@ana.example', ['y@dest.example'])).response, /^250 /)
      assert.match((await send(h, ana, 'a@ana.example', ['y2@dest.example'])).response, /^250 /)
    } finally {
      await setHolds(h.sql, ana.did, 'ana-two.example', true)
    }
    assert.match((await send(h, anaTwo, 'a@ana-two.example', ['z@dest.example'])).response, /^250 /)
  })

  it("a domain-scoped credential cannot send as the member's other domain; From must be at the domain sent as", async () => {
    const scoped = await refusal(send(h, ana, 'a@ana-two.example', ['x@dest.example']))
    assert.equal(
      scoped.response,
      '550 5.7.1 <a@ana-two.example>: this credential may send only as ana.example or a subdomain of it',
    )
    const elsewhere = await refusal(send(h, anaAll, 'a@elsewhere.example', ['x@dest.example']))
    assert.equal(
      elsewhere.response,
      `550 5.7.1 <a@elsewhere.example> is not at a domain ${ana.did} holds in the relay: ana-two.example, ana.example`,
    )
    // Sent as ana.example, a From at ana-two.example is another domain's.
    const from = await refusal(send(h, anaAll, 'a@ana.example', ['x@dest.example'], 'a@ana-two.example'))
    assert.equal(from.responseCode, 550)
    assert.match(from.response ?? '', /^550 5\.7\.1 .*must be an address at ana\.example or a subdomain of it/)
    // A subdomain of a held domain is that domain.
    assert.match((await send(h, ana, 'a@mail.ana.example', ['sub@dest.example'])).response, /^250 /)
  })

  it('sends as the closest domain the member holds: mail.dan.example, not dan.example', async () => {
    const dan = await createMember(h, 'dan.example')
    const sub = await addMemberDomain(h, dan, 'mail.dan.example')
    const any = await unscopedCredential(h, dan, 'dan-any')
    await send(h, any, 'a@mail.dan.example', ['closest@dest.example'])
    await send(h, any, 'a@dan.example', ['parent@dest.example'])
    const rows = (await spooled(h.sql)).filter((r) => r.memberId === dan.id)
    assert.deepEqual(
      rows.map((r) => [r.address, r.domainId]),
      [
        ['closest@dest.example', sub.domainId],
        ['parent@dest.example', dan.domainId],
      ],
    )
    const dkimDomains = (body: Buffer) =>
      parseMessage(body)
        .fields.filter((f) => f.key === 'dkim-signature')
        .map((f) => /\bd=([^;\s]+)/.exec(fieldValue(f))![1])
    assert.deepEqual(dkimDomains(rows[0]!.body), ['mail.dan.example', 'mail.dan.example', POOL_DOMAIN])
    assert.deepEqual(dkimDomains(rows[1]!.body), ['dan.example', 'dan.example', POOL_DOMAIN])
  })

  it('refuses a suspended domain with its reason while the other sends; a reinstatement takes it back', async () => {
    const eve = await createMember(h, 'eve.example')
    const eveTwo = await addMemberDomain(h, eve, 'eve-two.example')
    const db = createDb({ url: h.db.url, poolMax: 1 })
    const queue = new TypedQueue(memberStatusChanged, h.ctx.redis, h.prefix)
    try {
      const change = await setDomainStatus(db, queue, 'eve-two.example', 'suspended', 'phishing reports', 'operator:t')
      assert.equal(change.changed, true)
      assert.equal(change.enqueued, true)
      // Asking again changes nothing and names the same change.
      const again = await setDomainStatus(db, queue, 'eve-two.example', 'suspended', 'again', 'operator:t')
      assert.deepEqual([again.changed, again.changeId], [false, change.changeId])
      const [row] = await h.sql<{ domainId: number; toStatus: string }[]>`
        select domain_id::int as "domainId", to_status as "toStatus" from member_status_changes where id = ${change.changeId}`
      assert.deepEqual({ ...row }, { domainId: eveTwo.domainId, toStatus: 'suspended' })
      const [member] = await h.sql<{ status: string }[]>`select status from members where id = ${eve.id}`
      assert.equal(member!.status, 'active', 'the member and its other domain stay active')
      const err = await refusal(send(h, eveTwo, 'a@eve-two.example', ['x@dest.example']))
      assert.equal(err.response, '550 5.7.1 eve-two.example is suspended from the relay: phishing reports')
      assert.match((await send(h, eve, 'a@eve.example', ['x@dest.example'])).response, /^250 /)
      await setDomainStatus(db, queue, 'eve-two.example', 'active', 'reviewed', 'operator:t')
      assert.match((await send(h, eveTwo, 'a@eve-two.example', ['x@dest.example'])).response, /^250 /)
    } finally {
      await queue.close()
      await db.$client.end()
    }
  })

  it("a removed domain's credential stops working and the member's other credentials cannot send as it", async () => {
    const fay = await createMember(h, 'fay.example')
    const fayTwo = await addMemberDomain(h, fay, 'fay-two.example')
    const any = await unscopedCredential(h, fay, 'fay-any')
    await removeDomain(h.sql, 'fay-two.example', 'given up', 'operator:t')
    const login = await refusal(send(h, fayTwo, 'a@fay-two.example', ['x@dest.example']))
    assert.equal(login.responseCode, 535)
    const err = await refusal(send(h, any, 'a@fay-two.example', ['x@dest.example']))
    assert.equal(
      err.response,
      `550 5.7.1 <a@fay-two.example> is not at a domain ${fay.did} holds in the relay: fay.example`,
    )
  })

  it('caps each domain on its own: one at its cap refuses with its name, the other still sends', async () => {
    const gil = await createMember(h, 'gil.example')
    const gilTwo = await addMemberDomain(h, gil, 'gil-two.example')
    const eight = Array.from({ length: 8 }, (_, i) => `${i + 1}@d.example`)
    assert.match((await send(h, gil, 'a@gil.example', eight)).response, /^250 /)
    const over = await refusal(send(h, gil, 'a@gil.example', ['9@d.example']))
    assert.equal(over.responseCode, 451)
    assert.match(
      over.response ?? '',
      /^451 4\.7\.1 gil\.example reached its limit of 8 recipients today; it resets at /,
    )
    assert.match((await send(h, gilTwo, 'a@gil-two.example', eight)).response, /^250 /)
    const overTwo = await refusal(send(h, gilTwo, 'a@gil-two.example', ['9@d.example']))
    assert.match(overTwo.response ?? '', /^451 4\.7\.1 gil-two\.example reached its limit of 8 recipients today/)
    const volume = await h.sql<{ domainId: number; recipients: number }[]>`
      select domain_id::int as "domainId", recipients from send_volume where member_id = ${gil.id} order by domain_id`
    assert.deepEqual(
      volume.map((v) => [v.domainId, v.recipients]),
      [
        [gil.domainId, 8],
        [gilTwo.domainId, 8],
      ],
    )
    // A domain past warming has the next tier's cap, whatever the member's other domain's age.
    await h.sql`update domains set activated_at = now() - interval '4 days' where id = ${gilTwo.domainId}`
    assert.match((await send(h, gilTwo, 'a@gil-two.example', ['9@d.example'])).response, /^250 /)
    await refusal(send(h, gil, 'a@gil.example', ['10@d.example']))
  })
})
