import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isSrsAddress, readSrsAddress, srsAddress } from '../src/forwarding/srs.ts'

const key = { secret: 'a'.repeat(64), bounceDomain: 'bounces.pool.example' }
const DAY = 86_400_000
const now = Date.UTC(2026, 11, 7, 12)

describe('SRS addresses', () => {
  it('rewrites a sender into the SRS0 form at the bounce domain and reads it back', () => {
    const a = srsAddress(key, 'Alice.Smith+tag@Example.ORG', now)
    assert.ok(a)
    assert.match(a, /^srs0=[a-z2-7]{8}=[a-z2-7]{2}=example\.org=alice\.smith\+tag@bounces\.pool\.example$/)
    assert.ok(isSrsAddress(key, a))
    assert.deepEqual(readSrsAddress(key, a, 21, now), {
      ok: true,
      originalSender: 'alice.smith+tag@example.org',
      ageDays: 0,
    })
    // Some MTAs fold the case of the return path: it still verifies.
    assert.equal(readSrsAddress(key, a.toUpperCase(), 21, now).ok, true)
    // A local part holding '=' survives (the domain cannot hold one).
    const eq = srsAddress(key, 'a=b@example.org', now)!
    assert.deepEqual(readSrsAddress(key, eq, 21, now), { ok: true, originalSender: 'a=b@example.org', ageDays: 0 })
  })

  it('refuses a forged hash, another key, another bounce domain and a changed original', () => {
    const a = srsAddress(key, 'bob@example.org', now)!
    const hash = a.split('=')[1]!
    const flipped = a.replace(hash, hash.startsWith('a') ? `b${hash.slice(1)}` : `a${hash.slice(1)}`)
    assert.deepEqual(readSrsAddress(key, flipped, 21, now), { ok: false, reason: 'bad_hash' })
    assert.deepEqual(readSrsAddress({ ...key, secret: 'b'.repeat(64) }, a, 21, now), { ok: false, reason: 'bad_hash' })
    assert.deepEqual(readSrsAddress(key, a.replace('=bob@', '=eve@'), 21, now), { ok: false, reason: 'bad_hash' })
    assert.deepEqual(readSrsAddress(key, a.replace('bounces.pool.example', 'pool.example'), 21, now), {
      ok: false,
      reason: 'not_srs',
    })
    for (const junk of [
      'srs0=@bounces.pool.example',
      'srs0=abcdefgh=aa=@bounces.pool.example',
      'b+x@bounces.pool.example',
    ]) {
      assert.equal(readSrsAddress(key, junk, 21, now).ok, false, junk)
    }
  })

  it('checks the timestamp: accepted up to the maximum age, refused after it and from the future', () => {
    const a = srsAddress(key, 'bob@example.org', now)!
    assert.equal(readSrsAddress(key, a, 21, now + 21 * DAY).ok, true)
    assert.deepEqual(readSrsAddress(key, a, 21, now + 22 * DAY), { ok: false, reason: 'expired' })
    assert.deepEqual(readSrsAddress(key, a, 21, now - DAY), { ok: false, reason: 'expired' })
    // The timestamp wraps after 1024 days, as every SRS timestamp does; the hash still binds it.
    assert.equal(readSrsAddress(key, a, 21, now + 1024 * DAY).ok, true)
  })

  it('does not rewrite the null sender or shapes it does not carry', () => {
    for (const s of [
      '',
      '<>',
      'a%b@example.org',
      'a!b@example.org',
      '"a b"@example.org',
      'a@b@example.org',
      'a@localhost',
      'a@-x.example',
      `${'x'.repeat(65)}@example.org`,
    ]) {
      assert.equal(srsAddress(key, s, now), null, s)
    }
  })
})
