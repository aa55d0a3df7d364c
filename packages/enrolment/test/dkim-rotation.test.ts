import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SigningKeys, signMessage } from '@atmos/dkim'
import {
  addMember,
  cancelRotation,
  completeRotation,
  nextStem,
  RotationError,
  rotationState,
  startEnrolment,
  startRotation,
} from '../src/index.ts'
import { did, enrolmentHarness } from './harness.ts'

// DKIM key rotation against real Postgres, and what the relay signs with (the relay's own
// SigningKeys over the same rows): the old pair until the rotation completes, the new after.

const h = enrolmentHarness()

/** The selectors (s=) of the DKIM-Signature fields the relay's keys put on a message. */
async function signedSelectors(domainId: number): Promise<string[]> {
  // A TTL of 0: what the relay reads now, not a minute ago.
  const keys = await new SigningKeys(h.sql, { members: h.keyring }, 0).domain(domainId)
  const message = Buffer.from('From: a@rot.example\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n')
  const signed = (await signMessage(message, keys)).toString()
  const head = signed.slice(0, signed.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ')
  return head
    .split('\r\n')
    .filter((line) => line.startsWith('DKIM-Signature:'))
    .map((line) => /[;\s]s=([a-z0-9-]+);/.exec(line)?.[1] ?? '')
}

describe('DKIM key rotation (@atmos/enrolment)', () => {
  it('issues a pending pair under the next stem, signs with the old until complete, then with the new', async () => {
    const d = did('rota')
    const member = await addMember(h.sql, h.keyring, { did: d, domain: 'rot.example' })
    assert.deepEqual(await signedSelectors(member.domainId), ['atmos1r', 'atmos1e'])

    const started = await startRotation(h.sql, h.keyring, {
      did: d,
      domain: 'rot.example',
      detail: { ip: '192.0.2.9' },
    })
    assert.equal(started.started, true)
    assert.deepEqual(
      started.active.map((k) => k.selector),
      ['atmos1r', 'atmos1e'],
    )
    assert.deepEqual(
      started.pending?.map((k) => [k.selector, k.algorithm, k.txtName]),
      [
        ['atmos2r', 'rsa-sha256', 'atmos2r._domainkey.rot.example'],
        ['atmos2e', 'ed25519-sha256', 'atmos2e._domainkey.rot.example'],
      ],
    )
    assert.match(started.pending![0]!.txt, /^v=DKIM1; k=rsa; p=/)
    assert.match(started.pending![1]!.txt, /^v=DKIM1; k=ed25519; p=/)
    assert.doesNotMatch(JSON.stringify(started), /PRIVATE KEY/)
    assert.ok(started.startedAt instanceof Date)
    // Pending keys sign nothing.
    assert.deepEqual(await signedSelectors(member.domainId), ['atmos1r', 'atmos1e'])

    // One rotation at a time: a second start returns the one under way.
    const again = await startRotation(h.sql, h.keyring, { did: d, domain: 'rot.example' })
    assert.equal(again.started, false)
    assert.deepEqual(
      again.pending?.map((k) => k.txt),
      started.pending?.map((k) => k.txt),
    )
    const [{ n }] = (await h.sql`select count(*)::int as n from dkim_keys where domain = 'rot.example'`) as [
      { n: number },
    ]
    assert.equal(n, 4)

    await assert.rejects(
      completeRotation(h.sql, { did: d, domain: 'rot.example', expect: ['atmos9r', 'atmos9e'] }),
      /changed meanwhile/,
    )
    const done = await completeRotation(h.sql, { did: d, domain: 'rot.example', expect: ['atmos2r', 'atmos2e'] })
    assert.deepEqual(done, { domain: 'rot.example', from: ['atmos1e', 'atmos1r'], to: ['atmos2e', 'atmos2r'] })
    assert.deepEqual(await signedSelectors(member.domainId), ['atmos2r', 'atmos2e'])
    const rows = await h.sql`select selector, status, activated_at, retired_at from dkim_keys
                           where domain = 'rot.example' order by selector`
    assert.deepEqual(
      rows.map((r) => [r.selector, r.status]),
      [
        ['atmos1e', 'retired'],
        ['atmos1r', 'retired'],
        ['atmos2e', 'active'],
        ['atmos2r', 'active'],
      ],
    )
    assert.ok(rows.every((r) => r.activated_at instanceof Date))
    const state = await rotationState(h.sql, d, 'rot.example')
    assert.equal(state.pending, null)
    assert.ok(state.lastRotatedAt instanceof Date)
    await assert.rejects(completeRotation(h.sql, { did: d, domain: 'rot.example' }), RotationError)

    const audit = await h.sql`select action, actor, detail from audit_log
                            where domain = 'rot.example' and action like 'dkim.%' order by id`
    assert.deepEqual(
      audit.map((a) => [a.action, a.actor]),
      [
        ['dkim.rotation_started', `admin:${d}`],
        ['dkim.rotated', `admin:${d}`],
      ],
    )
    assert.deepEqual(audit[0]!.detail, { ip: '192.0.2.9', from: ['atmos1r', 'atmos1e'], to: ['atmos2r', 'atmos2e'] })

    // The next rotation goes on to atmos3.
    const third = await startRotation(h.sql, h.keyring, { did: d, domain: 'rot.example' })
    assert.deepEqual(
      third.pending?.map((k) => k.selector),
      ['atmos3r', 'atmos3e'],
    )
  })

  it('cancels a rotation (its keys deleted), and refuses another DID, a pending domain, and a race', async () => {
    const d = did('rotb')
    const member = await addMember(h.sql, h.keyring, { did: d, domain: 'rot-b.example' })
    assert.equal(await cancelRotation(h.sql, { did: d, domain: 'rot-b.example' }), false)
    await startRotation(h.sql, h.keyring, { did: d, domain: 'rot-b.example' })
    assert.equal(await cancelRotation(h.sql, { did: d, domain: 'rot-b.example' }), true)
    assert.deepEqual(
      (await h.sql`select selector from dkim_keys where domain = 'rot-b.example' order by selector`).map(
        (r) => r.selector,
      ),
      ['atmos1e', 'atmos1r'],
    )
    assert.deepEqual(await signedSelectors(member.domainId), ['atmos1r', 'atmos1e'])
    const [cancelled] = await h.sql`select detail from audit_log where action = 'dkim.rotation_cancelled'`
    assert.deepEqual(cancelled!.detail, { selectors: ['atmos2e', 'atmos2r'] })

    await assert.rejects(
      startRotation(h.sql, h.keyring, { did: did('rotc'), domain: 'rot-b.example' }),
      /does not hold/,
    )
    await assert.rejects(completeRotation(h.sql, { did: did('rotc'), domain: 'rot-b.example' }), /does not hold/)
    const p = did('rotd')
    await startEnrolment(h.sql, h.keyring, { did: p, domain: 'rot-pending.example', maxDomains: 1 })
    await assert.rejects(
      startRotation(h.sql, h.keyring, { did: p, domain: 'rot-pending.example' }),
      /still being enrolled/,
    )

    // Two starts at once: one pair, not two.
    const both = await Promise.all([
      startRotation(h.sql, h.keyring, { did: d, domain: 'rot-b.example' }),
      startRotation(h.sql, h.keyring, { did: d, domain: 'rot-b.example' }),
    ])
    assert.deepEqual(both.map((s) => s.started).sort(), [false, true])
    const pending = await h.sql`select selector from dkim_keys where domain = 'rot-b.example' and status = 'pending'`
    assert.equal(pending.length, 2)
  })

  it('picks a stem no earlier holder used, and counts on from any stem', () => {
    assert.equal(nextStem('atmos1', new Set()), 'atmos2')
    assert.equal(nextStem('atmos9', new Set(['atmos10r'])), 'atmos11')
    assert.equal(nextStem('mail', new Set()), 'mail2')
    assert.equal(nextStem('s2024', new Set(['s2025e'])), 's2026')
  })
})
