import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createDb } from '@atmos/db'
import { verifyPassword } from '@atmos/secrets'
import {
  activateDomain,
  addMember,
  issueCredential,
  NotVerifiedError,
  type StatusChange,
  startEnrolment,
} from '../src/index.ts'
import { did, enrolmentHarness } from './harness.ts'

// Enrolment through the wizard, against real Postgres: a pending member holding a pending
// domain with its keys, resumed, activated once its attestation holds, given a credential.
// (The operator's enrolment, addMember/addDomain, is tested through the relay's CLI tests.)

const h = enrolmentHarness()

async function verified(d: string, domain: string) {
  await h.sql`
    insert into verification_status (did, domain, holds, last_outcome, last_run_at)
    values (${d}, ${domain}, true, 'pass', now())
    on conflict (did, domain) do update set holds = true`
}

describe('enrolment as a pending member (@atmos/enrolment)', () => {
  it('starts pending with two keys and no credential, resumes with the same keys, activates only once verified', async () => {
    const d = did('pendinga')
    const e = await startEnrolment(h.sql, h.keyring, {
      did: d,
      domain: 'Pending.Example.',
      maxDomains: 2,
      auditDetail: { ip: '203.0.113.9' },
    })
    assert.equal(e.domain, 'pending.example')
    assert.equal(e.memberStatus, 'pending')
    assert.equal(e.domainStatus, 'pending')
    assert.equal(e.created, true)
    assert.deepEqual(
      e.keys.map((k) => [k.selector, k.algorithm]),
      [
        ['atmos1r', 'rsa-sha256'],
        ['atmos1e', 'ed25519-sha256'],
      ],
    )
    const [m] = await h.sql`select status, activated_at from members where did = ${d}`
    assert.equal(m!.status, 'pending')
    assert.equal(m!.activated_at, null)
    const [dom] = await h.sql`select status, activated_at from domains where domain = 'pending.example'`
    assert.equal(dom!.status, 'pending')
    assert.equal(dom!.activated_at, null, 'warming starts at activation, not at enrolment')
    assert.equal((await h.sql`select 1 from smtp_credentials where username = 'pending.example'`).length, 0)
    const [audit] =
      await h.sql`select actor, detail from audit_log where action = 'domain.added' and domain = 'pending.example'`
    assert.equal(audit!.actor, `admin:${d}`)
    assert.equal(audit!.detail.status, 'pending')
    assert.equal(audit!.detail.ip, '203.0.113.9', "the caller's detail (a web request's address) is kept")
    // No private key anywhere in what is returned.
    assert.doesNotMatch(JSON.stringify(e), /PRIVATE KEY/)

    const again = await startEnrolment(h.sql, h.keyring, { did: d, domain: 'pending.example', maxDomains: 2 })
    assert.equal(again.created, false)
    assert.deepEqual(
      again.keys.map((k) => k.txt),
      e.keys.map((k) => k.txt),
    )
    assert.equal((await h.sql`select 1 from dkim_keys where domain = 'pending.example'`).length, 2)

    await assert.rejects(activateDomain(h.sql, { did: d, domain: 'pending.example' }), NotVerifiedError)
    await assert.rejects(
      issueCredential(h.sql, { did: d, domain: 'pending.example' }),
      /issued once the domain is verified/,
    )

    await verified(d, 'pending.example')
    const a = await activateDomain(h.sql, { did: d, domain: 'pending.example', auditDetail: { ip: '203.0.113.9' } })
    assert.equal(a.activated, true)
    assert.equal(a.memberActivated, true)
    assert.deepEqual(
      a.changes.map((c: StatusChange) => [c.did, c.status]),
      [
        [d, 'active'],
        [d, 'active'],
      ],
    )
    const [m2] = await h.sql`select status, activated_at from members where did = ${d}`
    assert.equal(m2!.status, 'active')
    assert.ok(m2!.activated_at)
    const [dom2] = await h.sql`select status, activated_at from domains where domain = 'pending.example'`
    assert.equal(dom2!.status, 'active')
    assert.ok(dom2!.activated_at)
    const actions = await h.sql`select action, detail->>'ip' as ip from audit_log where did = ${d} order by id`
    assert.deepEqual(
      actions.map((r) => [r.action, r.ip]),
      [
        ['domain.added', '203.0.113.9'],
        ['domain.activated', '203.0.113.9'],
        ['member.activated', '203.0.113.9'],
      ],
    )
    const twice = await activateDomain(h.sql, { did: d, domain: 'pending.example' })
    assert.equal(twice.activated, false)
    assert.deepEqual(twice.changes, [])

    const cred = await issueCredential(h.sql, { did: d, domain: 'pending.example' })
    assert.equal(cred.username, 'pending.example')
    const [row] = await h.sql`
      select password_hash, domain_id::int as domain_id from smtp_credentials
      where username = 'pending.example' and revoked_at is null`
    assert.ok(await verifyPassword(cred.password, row!.password_hash))
    assert.ok(row!.domain_id, 'scoped to the domain')
    const rotated = await issueCredential(h.sql, { did: d, domain: 'pending.example' })
    assert.notEqual(rotated.password, cred.password)
    const [row2] =
      await h.sql`select password_hash from smtp_credentials where username = 'pending.example' and revoked_at is null`
    assert.equal(await verifyPassword(cred.password, row2!.password_hash), false)
    // Another DID cannot have credentials for it.
    await assert.rejects(issueCredential(h.sql, { did: did('intruder'), domain: 'pending.example' }), /does not hold/)
  })

  it('refuses a suspended member, and the maximum of domains', async () => {
    const d = did('suspendeda')
    await h.sql`insert into members (did, status) values (${d}, 'suspended')`
    await assert.rejects(
      startEnrolment(h.sql, h.keyring, { did: d, domain: 'susp.example', maxDomains: 2 }),
      /is suspended; an operator must reinstate it/,
    )
    const full = did('fulla')
    await startEnrolment(h.sql, h.keyring, { did: full, domain: 'one.full.example', maxDomains: 1 })
    await assert.rejects(
      startEnrolment(h.sql, h.keyring, { did: full, domain: 'two.full.example', maxDomains: 1 }),
      /at most 1 a member/,
    )
  })
})

describe('audit rows', () => {
  it('hold a JSON object whether or not the pool went through drizzle', async () => {
    const db = createDb({ url: h.url, poolMax: 1 })
    try {
      await addMember(db.$client, h.keyring, { did: did('drizzlea'), domain: 'drizzle.example', actor: 'test' })
      await startEnrolment(h.sql, h.keyring, { did: did('rawa'), domain: 'raw.example', maxDomains: 1 })
      const rows = await h.sql`
        select domain, jsonb_typeof(detail) as t from audit_log where domain in ('drizzle.example', 'raw.example') order by domain`
      assert.deepEqual(
        rows.map((r) => [r.domain, r.t]),
        [
          ['drizzle.example', 'object'],
          ['raw.example', 'object'],
        ],
      )
    } finally {
      await db.$client.end({ timeout: 5 })
    }
  })
})
