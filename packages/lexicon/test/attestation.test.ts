import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { COOPERATIVE_LABELS, LABELS, validateAttestation } from '../src/index.ts'

const valid = {
  $type: 'email.atmos.attestation',
  domain: 'mail.example.com',
  dkimSelectors: ['atmos1', 'backup-2'],
  relayMember: true,
  createdAt: '2026-11-25T08:00:00.000Z',
}

function rejects(record: unknown, pattern: RegExp, rkey?: string) {
  const result = validateAttestation(record, rkey)
  assert.equal(result.success, false, `expected rejection of ${JSON.stringify(record).slice(0, 200)}`)
  if (!result.success) assert.match(result.error, pattern)
}

describe('email.atmos.attestation validation', () => {
  it('accepts a valid record, with or without $type', () => {
    const result = validateAttestation(valid)
    assert.equal(result.success, true)
    if (result.success) assert.deepEqual(result.value.dkimSelectors, ['atmos1', 'backup-2'])
    const { $type: _, ...untyped } = valid
    assert.equal(validateAttestation(untyped).success, true)
    const { relayMember: __, ...minimal } = valid
    assert.equal(validateAttestation(minimal).success, true)
  })

  it('rejects a record of another type', () => {
    rejects({ ...valid, $type: 'app.bsky.feed.post' }, /email\.atmos\.attestation/)
  })

  it('rejects a missing domain', () => {
    const { domain: _, ...record } = valid
    rejects(record, /domain/)
  })

  it('rejects a domain that is not a domain name', () => {
    rejects({ ...valid, domain: 'not a domain.com' }, /Record\/domain has an invalid label "not a domain"/)
    rejects({ ...valid, domain: 'localhost' }, /Record\/domain must be a fully-qualified domain name/)
    rejects({ ...valid, domain: '192.168.10.20' }, /Record\/domain must be a domain name, not an IP address/)
    rejects({ ...valid, domain: 'Mail.Example.com' }, /Record\/domain must be lower case/)
    rejects({ ...valid, domain: 'example.com.' }, /Record\/domain must not end with a dot/)
    rejects({ ...valid, domain: 'example.123' }, /numeric top-level label/)
    rejects({ ...valid, domain: 42 }, /Record\/domain must be a string/)
  })

  it('rejects an empty or non-string selector list', () => {
    rejects({ ...valid, dkimSelectors: [] }, /Record\/dkimSelectors must not have fewer than 1 elements/)
    rejects({ ...valid, dkimSelectors: 'atmos1' }, /Record\/dkimSelectors must be an array/)
    rejects({ ...valid, dkimSelectors: [42] }, /Record\/dkimSelectors\/0 must be a string/)
    rejects({ ...valid, dkimSelectors: [''] }, /Record\/dkimSelectors\/0 must not be shorter than 1 characters/)
    rejects({ ...valid, dkimSelectors: ['a.b'] }, /Record\/dkimSelectors\/0 "a.b" is not a single DNS label/)
    rejects({ ...valid, dkimSelectors: ['../x'] }, /not a single DNS label/)
    rejects({ ...valid, dkimSelectors: ['sel', 'SEL'] }, /must not repeat a selector/)
  })

  it('rejects oversized fields', () => {
    rejects({ ...valid, domain: `${'a.'.repeat(150)}com` }, /Record\/domain must not be longer than 253 characters/)
    rejects(
      { ...valid, dkimSelectors: Array.from({ length: 10_000 }, (_, i) => `s${i}`) },
      /must not have more than 10 elements/,
    )
    rejects({ ...valid, dkimSelectors: Array.from({ length: 11 }, (_, i) => `s${i}`) }, /more than 10 elements/)
    rejects({ ...valid, dkimSelectors: ['s'.repeat(64)] }, /must not be longer than 63 characters/)
  })

  it('rejects a bad createdAt and a wrong relayMember type', () => {
    rejects({ ...valid, createdAt: 'yesterday' }, /Record\/createdAt must be an valid atproto datetime/)
    rejects({ ...valid, relayMember: 'yes' }, /Record\/relayMember must be a boolean/)
  })

  it('is never stricter than the published schema on what it states: 10 selectors, short domains', () => {
    const ten = Array.from({ length: 10 }, (_, i) => `s${i}`)
    assert.equal(validateAttestation({ ...valid, dkimSelectors: ten }).success, true)
    assert.equal(validateAttestation({ ...valid, domain: 'a.b' }).success, true)
    assert.equal(validateAttestation({ ...valid, dkimSelectors: ['s'.repeat(63)] }).success, true)
  })

  it('with a record key, requires it to be the attested domain', () => {
    const result = validateAttestation(valid, 'mail.example.com')
    assert.equal(result.success, true)
    rejects(valid, /^record key "other\.example" must be the attested domain "mail\.example\.com"$/, 'other.example')
    // The key every record had before the published lexicon: a new write under it is refused too.
    rejects(valid, /^record key "self" must be the attested domain "mail\.example\.com"$/, 'self')
    // Case matters: the domain is lower case, and so must the key be.
    rejects(valid, /record key "Mail\.Example\.com"/, 'Mail.Example.com')
    // A schema error is reported before the key's.
    rejects({ ...valid, dkimSelectors: [] }, /dkimSelectors must not have fewer than 1 elements/, 'x')
  })
})

describe('email.atmos.defs', () => {
  it('exports the published label vocabulary', () => {
    assert.deepEqual([...COOPERATIVE_LABELS], ['verified-mail-operator', 'relay-member', 'clean-sender'])
    assert.deepEqual(Object.values(LABELS), [...COOPERATIVE_LABELS])
  })
})
