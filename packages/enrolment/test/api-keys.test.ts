import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  addMember,
  DomainError,
  issueApiKey,
  liveApiKey,
  parseApiKey,
  removeDomain,
  revokeApiKey,
  startEnrolment,
  verifyApiKey,
} from '../src/index.ts'
import { did, enrolmentHarness } from './harness.ts'

// API keys against real Postgres: issued once a domain is active, one live key a domain,
// only a keyed hash stored, verified in constant time, refused once revoked or rotated.

const h = enrolmentHarness()

describe('API keys (@atmos/enrolment)', () => {
  it('issues a key shown once, stores only its hash, verifies it and records its use', async () => {
    const d = did('apia')
    await addMember(h.sql, h.keyring, { did: d, domain: 'api-a.example' })
    const issued = await issueApiKey(h.sql, { did: d, domain: 'API-A.example', detail: { ip: '192.0.2.1' } })
    assert.match(issued.key, /^atmos_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
    assert.equal(issued.revokedKeyId, null)
    assert.deepEqual(parseApiKey(issued.key)?.keyId, issued.keyId)
    const secret = issued.key.slice(`atmos_${issued.keyId}_`.length)
    const [row] = await h.sql`select key_id, secret_hash, last_used_at from api_keys where key_id = ${issued.keyId}`
    assert.equal(row!.last_used_at, null)
    assert.equal(row!.secret_hash.length, 32)
    const everything = JSON.stringify(await h.sql`select * from api_keys`)
    assert.doesNotMatch(everything, new RegExp(secret.replace(/[-_]/g, '.')), 'the secret is not stored')
    const [audit] =
      await h.sql`select actor, action, detail from audit_log where domain = 'api-a.example' and action like 'api_key.%'`
    assert.equal(audit!.action, 'api_key.issued')
    assert.equal(audit!.actor, `admin:${d}`)
    assert.deepEqual(audit!.detail, { ip: '192.0.2.1', keyId: issued.keyId })
    assert.doesNotMatch(
      JSON.stringify(await h.sql`select * from audit_log`),
      new RegExp(secret.slice(0, 20).replace(/[-_]/g, '.')),
    )

    const who = await verifyApiKey(h.sql, issued.key)
    assert.ok(who)
    assert.equal(who.did, d)
    assert.equal(who.domain, 'api-a.example')
    assert.equal(who.memberStatus, 'active')
    assert.equal(who.domainStatus, 'active')
    assert.equal(who.keyId, issued.keyId)
    assert.equal(Object.hasOwn(who, 'hash'), false, 'the hash is not handed out')
    const [used] = await h.sql`select last_used_at from api_keys where key_id = ${issued.keyId}`
    assert.ok(used!.last_used_at instanceof Date)
    assert.equal((await liveApiKey(h.sql, d, 'api-a.example'))?.keyId, issued.keyId)
  })

  it('refuses a wrong secret, a malformed key, an unknown id, and a hash moved to another row', async () => {
    const d = did('apib')
    await addMember(h.sql, h.keyring, { did: d, domain: 'api-b.example', maxDomains: 2 })
    const issued = await issueApiKey(h.sql, { did: d, domain: 'api-b.example' })
    const secret = issued.key.slice(-43)
    const flipped = `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`
    assert.equal(await verifyApiKey(h.sql, `atmos_${issued.keyId}_${flipped}`), null)
    assert.equal(await verifyApiKey(h.sql, `atmos_0000000000000000_${secret}`), null)
    for (const bad of [
      '',
      'atmos_',
      `${issued.key}x`,
      issued.key.toUpperCase(),
      `Bearer ${issued.key}`,
      'x'.repeat(10_000),
    ]) {
      assert.equal(await verifyApiKey(h.sql, bad), null, bad.slice(0, 40))
    }
    // The hash is keyed by the key id: copied onto another key's row it does not verify there.
    await h.sql`insert into domains (member_id, domain) select member_id, 'api-b2.example' from domains where domain = 'api-b.example'`
    const other = await issueApiKey(h.sql, { did: d, domain: 'api-b2.example' })
    await h.sql`update api_keys set secret_hash = (select secret_hash from api_keys where key_id = ${issued.keyId})
              where key_id = ${other.keyId}`
    assert.equal(await verifyApiKey(h.sql, `atmos_${other.keyId}_${secret}`), null)
  })

  it('keeps one live key a domain: rotation revokes the previous key at once', async () => {
    const d = did('apic')
    await addMember(h.sql, h.keyring, { did: d, domain: 'api-c.example' })
    const first = await issueApiKey(h.sql, { did: d, domain: 'api-c.example' })
    const [a, b] = await Promise.all([
      issueApiKey(h.sql, { did: d, domain: 'api-c.example' }),
      issueApiKey(h.sql, { did: d, domain: 'api-c.example' }),
    ])
    const live = await h.sql`select key_id from api_keys k join domains d on d.id = k.domain_id
                           where d.domain = 'api-c.example' and k.revoked_at is null`
    assert.equal(live.length, 1)
    assert.equal(await verifyApiKey(h.sql, first.key), null, 'the first key stopped working')
    const winners = [a, b].filter((k) => k.keyId === live[0]!.key_id)
    assert.equal(winners.length, 1)
    assert.ok((await verifyApiKey(h.sql, winners[0]!.key)) !== null)
    const actions =
      await h.sql`select action from audit_log where domain = 'api-c.example' and action like 'api_key.%' order by id`
    assert.deepEqual(
      actions.map((r) => r.action),
      ['api_key.issued', 'api_key.rotated', 'api_key.rotated'],
    )
    assert.equal(await revokeApiKey(h.sql, { did: d, domain: 'api-c.example' }), true)
    assert.equal(await verifyApiKey(h.sql, winners[0]!.key), null)
    assert.equal(await revokeApiKey(h.sql, { did: d, domain: 'api-c.example' }), false)
  })

  it('reports suspension, refuses a pending domain and another DID, and dies with its domain', async () => {
    const d = did('apid')
    await addMember(h.sql, h.keyring, { did: d, domain: 'api-d.example' })
    const issued = await issueApiKey(h.sql, { did: d, domain: 'api-d.example' })
    await h.sql`update members set status = 'suspended' where did = ${d}`
    assert.equal((await verifyApiKey(h.sql, issued.key))?.memberStatus, 'suspended', 'the caller refuses it')
    await assert.rejects(issueApiKey(h.sql, { did: did('apie'), domain: 'api-d.example' }), DomainError)
    const p = did('apif')
    await startEnrolment(h.sql, h.keyring, { did: p, domain: 'api-pending.example', maxDomains: 1 })
    await assert.rejects(issueApiKey(h.sql, { did: p, domain: 'api-pending.example' }), /is pending/)
    await removeDomain(h.sql, 'api-d.example', 'test', 'operator:test')
    assert.equal(await verifyApiKey(h.sql, issued.key), null)
    const [k] = await h.sql`select revoked_at from api_keys where key_id = ${issued.keyId}`
    assert.ok(k!.revoked_at instanceof Date)
  })
})
