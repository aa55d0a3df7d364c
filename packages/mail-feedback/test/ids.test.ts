import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  feedbackId,
  messageToken,
  POOL_ID,
  readFeedbackId,
  readMessageToken,
  readVerpAddress,
  type VerpConfig,
  verpAddress,
} from '../src/index.ts'

const cfg: VerpConfig = { secret: 'test-secret-1', bounceDomain: 'Bounces.Atmos.Test', prefix: 'b' }
const ID = '0f8fad5b-d9cb-469f-a165-70867728950e'

describe('message tokens', () => {
  it('round-trips a message id, whatever the case of the id', () => {
    const token = messageToken(cfg, ID)
    assert.match(token, /^[0-9a-f]{32}\.[0-9a-f]{12}$/)
    assert.equal(readMessageToken(cfg, token), ID)
    assert.equal(messageToken(cfg, ID.toUpperCase()), token)
    assert.equal(readMessageToken(cfg, ` ${token.toUpperCase()} `), ID)
  })

  it('rejects a token signed with another secret, a changed id or a changed MAC', () => {
    const token = messageToken(cfg, ID)
    assert.equal(readMessageToken({ secret: 'other' }, token), null)
    const [hex, mac] = token.split('.') as [string, string]
    const otherHex = `${hex.slice(0, -1)}${hex.endsWith('0') ? '1' : '0'}`
    assert.equal(readMessageToken(cfg, `${otherHex}.${mac}`), null)
    assert.equal(readMessageToken(cfg, `${hex}.${mac.replace(/^./, (c) => (c === 'a' ? 'b' : 'a'))}`), null)
    for (const junk of ['', 'x', `${hex}.`, `${hex}.${mac}0`, `${hex}${mac}`])
      assert.equal(readMessageToken(cfg, junk), null)
  })

  it('refuses to build a token for something that is not a UUID', () => {
    assert.throws(() => messageToken(cfg, 'not-a-uuid'), /UUID/)
  })
})

describe('VERP addresses', () => {
  it('builds b+<token>@<bounce domain> and reads it back, ignoring case and angle brackets', () => {
    const address = verpAddress(cfg, ID)
    assert.equal(address, `b+${messageToken(cfg, ID)}@bounces.atmos.test`)
    assert.equal(readVerpAddress(cfg, address), ID)
    assert.equal(readVerpAddress(cfg, `<${address.toUpperCase()}>`), ID)
  })

  it('reads nothing from other domains, other prefixes or forged tokens', () => {
    const address = verpAddress(cfg, ID)
    assert.equal(readVerpAddress(cfg, address.replace('bounces.atmos.test', 'evil.test')), null)
    assert.equal(readVerpAddress(cfg, address.replace(/^b\+/, 'c+')), null)
    assert.equal(readVerpAddress({ ...cfg, secret: 'other' }, address), null)
    assert.equal(readVerpAddress(cfg, 'postmaster@bounces.atmos.test'), null)
    assert.equal(readVerpAddress(cfg, 'no-at-sign'), null)
  })
})

describe('Feedback-ID', () => {
  it('writes the member in a field of its own and reads it back for our pool only', () => {
    const value = feedbackId({ memberId: 42, poolId: 'atmospool' })
    assert.equal(value, 'tx:m42:atmos:atmospool')
    assert.equal(readFeedbackId(value, 'atmospool'), 42)
    assert.equal(readFeedbackId(` ${value} `, 'atmospool'), 42)
    assert.equal(readFeedbackId(value, 'otherpool'), null)
    assert.equal(feedbackId({ memberId: 7, poolId: 'atmospool', stream: 'notify' }), 'notify:m7:atmos:atmospool')
  })

  it('ignores other senders’ Feedback-IDs and malformed member fields', () => {
    for (const v of [
      'a:b:c:atmospool',
      'tx:m0:atmos:atmospool',
      'tx:m01:atmos:atmospool',
      'tx:m1:other:atmospool',
      'tx:m1:atmos',
    ]) {
      assert.equal(readFeedbackId(v, 'atmospool'), null, v)
    }
  })

  it('validates the pool id and stream it is given', () => {
    assert.ok(POOL_ID.test('atmospool'))
    assert.throws(() => feedbackId({ memberId: 1, poolId: 'abc' }), /pool id/)
    assert.throws(() => feedbackId({ memberId: 1, poolId: 'atmospool', stream: 'Bad Stream' }), /stream/)
  })
})
