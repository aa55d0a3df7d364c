import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { validateAttestation } from '../src/index.ts'

const valid = {
  $type: 'email.atmos.attestation',
  domain: 'mail.example.com',
  dkimSelectors: ['atmos1', 'backup-2'],
  relayMember: true,
  createdAt: '2026-11-25T08:00:00.000Z',
}

function rejects(record: unknown, pattern: RegExp) {
  const result = validateAttestation(record)
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
      /must not have more than 8 elements/,
    )
    rejects({ ...valid, dkimSelectors: ['s'.repeat(64)] }, /must not be longer than 63 characters/)
  })

  it('rejects a bad createdAt and a wrong relayMember type', () => {
    rejects({ ...valid, createdAt: 'yesterday' }, /Record\/createdAt must be an valid atproto datetime/)
    rejects({ ...valid, relayMember: 'yes' }, /Record\/relayMember must be a boolean/)
  })
})
