import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { QueryCache } from '../src/api/query-cache.ts'
import { coveringPatterns, decodeCursor, encodeCursor, parsePattern } from '../src/api/query-labels.ts'

describe('queryLabels page cache', () => {
  it('serves a stored page until labels change', () => {
    const cache = new QueryCache(1024)
    cache.set('a', Buffer.from('page a'), cache.begin())
    assert.equal(cache.get('a')?.toString(), 'page a')
    cache.invalidate()
    assert.equal(cache.get('a'), undefined)
  })

  it('never stores a page built across a change', () => {
    const cache = new QueryCache(1024)
    const token = cache.begin()
    cache.invalidate() // a label changed while the page was being built
    cache.set('a', Buffer.from('stale'), token)
    assert.equal(cache.get('a'), undefined)
  })

  it('stays within its byte budget, dropping the least recently used', () => {
    const cache = new QueryCache(100)
    for (const k of ['a', 'b', 'c', 'd']) cache.set(k, Buffer.alloc(25, k), cache.begin())
    cache.get('a') // a is now the most recent
    cache.set('e', Buffer.alloc(25, 'e'), cache.begin())
    assert.ok(cache.get('a'))
    assert.equal(cache.get('b'), undefined)
    assert.ok(cache.get('e'))
    const off = new QueryCache(0)
    off.set('a', Buffer.from('x'), off.begin())
    assert.equal(off.get('a'), undefined)
  })
})

describe('queryLabels patterns and cursors', () => {
  it('turns a trailing * into a byte-order range, refuses a * elsewhere, and matches the rest exactly', () => {
    assert.deepEqual(parsePattern('did:plc:abc*'), { kind: 'prefix', from: 'did:plc:abc', to: 'did:plc:abd' })
    assert.deepEqual(parsePattern('*'), { kind: 'prefix', from: '', to: null })
    assert.deepEqual(parsePattern('at://did:plc:x/app.bsky.feed.post/y'), {
      kind: 'exact',
      uri: 'at://did:plc:x/app.bsky.feed.post/y',
    })
    assert.throws(() => parsePattern('at://did:plc:x/*/y'), /"\*" only as the last character/)
    assert.throws(() => parsePattern('**'), /"\*" only as the last character/)
    assert.deepEqual(parsePattern('a%_*'), { kind: 'prefix', from: 'a%_', to: 'a%`' })
    assert.deepEqual(parsePattern('did:é*'), { kind: 'prefix', from: 'did:é', to: 'did:ê' })
  })

  it('keeps only the patterns no other one covers', () => {
    const kept = (...patterns: string[]) =>
      coveringPatterns(patterns.map(parsePattern)).map((p) => (p.kind === 'exact' ? p.uri : `${p.from}*`))
    assert.deepEqual(kept('did:plc:a', '*', 'did:*'), ['*'])
    assert.deepEqual(kept('did:plc:a*', 'did:plc:*', 'did:plc:ab', 'did:web:x'), ['did:plc:*', 'did:web:x'])
    assert.deepEqual(kept('did:plc:a', 'did:plc:a', 'did:plc:*', 'did:plc:*'), ['did:plc:*'])
    assert.deepEqual(kept('did:plc:a', 'did:plc:b'), ['did:plc:a', 'did:plc:b'])
  })

  it('round-trips cursors and refuses forged ones', () => {
    const c = encodeCursor({ uri: 'did:plc:xyz', seq: 42 })
    assert.deepEqual(decodeCursor(c), { uri: 'did:plc:xyz', seq: 42 })
    assert.throws(() => decodeCursor('42'), /cursor must be one returned by an earlier page/)
    assert.throws(() => decodeCursor('x:abc'), /cursor/)
  })
})
