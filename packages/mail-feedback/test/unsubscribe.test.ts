import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { normalizeCategory, readUnsubscribeToken, unsubscribeToken } from '../src/index.ts'

const key = { secret: 'a'.repeat(64) }
const subject = {
  memberId: 42,
  recipient: 'Ann.Example+tag@dest.example',
  messageId: '0f8b4a1c-2d3e-4f50-8a6b-7c8d9e0f1a2b',
}

describe('unsubscribe tokens', () => {
  it('round-trips member, recipient and message, URL-safe', () => {
    const token = unsubscribeToken(key, subject)
    assert.match(token, /^[A-Za-z0-9._-]+$/)
    assert.deepEqual(readUnsubscribeToken(key, token), subject)
  })

  it('refuses a token under another key, with any part altered, or malformed', () => {
    const token = unsubscribeToken(key, subject)
    assert.equal(readUnsubscribeToken({ secret: 'b'.repeat(64) }, token), null)
    const [member, hex, rcpt, mac] = token.split('.') as [string, string, string, string]
    const other = Buffer.from('victim@dest.example').toString('base64url')
    for (const forged of [
      `43.${hex}.${rcpt}.${mac}`,
      `${member}.${hex.replace(/^./, (c) => (c === '0' ? '1' : '0'))}.${rcpt}.${mac}`,
      `${member}.${hex}.${other}.${mac}`,
      `${member}.${hex}.${rcpt}.${mac.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))}`,
      `${member}.${hex}.${rcpt}`,
      '',
      `${token}.x`,
      'x'.repeat(5000),
    ]) {
      assert.equal(readUnsubscribeToken(key, forged), null, forged)
    }
  })

  it('is not a VERP token: the MACs are under labels of their own', async () => {
    const { messageToken, readMessageToken } = await import('../src/ids.ts')
    const ref = messageToken(key, subject.messageId)
    assert.equal(readUnsubscribeToken(key, ref), null)
    assert.equal(readMessageToken(key, unsubscribeToken(key, subject)), null)
  })
})

describe('categories', () => {
  it('accepts short lower-case tokens (trimmed, lower-cased) and nothing else', () => {
    assert.equal(normalizeCategory(' Newsletter '), 'newsletter')
    assert.equal(normalizeCategory('a'.repeat(40)), 'a'.repeat(40))
    for (const bad of ['', 'a'.repeat(41), 'news letter', 'news_letter', 'nëws', 'a,b']) {
      assert.equal(normalizeCategory(bad), null, bad)
    }
  })
})
