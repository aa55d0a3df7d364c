import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type PageScope, QueryCache } from '../src/api/query-cache.ts'
import { coveringPatterns, decodeCursor, encodeCursor, parsePattern } from '../src/api/query-labels.ts'

const everything: PageScope = { patterns: [parsePattern('*')], sources: [], from: '', to: null }
const scope = (pattern: string, more: Partial<PageScope> = {}): PageScope => ({
  patterns: [parsePattern(pattern)],
  sources: [],
  from: '',
  to: null,
  ...more,
})
const change = (uri: string, src = 'did:plc:labeler') => ({ uri, src })

describe('queryLabels page cache', () => {
  it('serves a stored page until a label it can show changes', () => {
    const cache = new QueryCache(1024)
    cache.set('a', Buffer.from('page a'), scope('did:plc:a*'), cache.begin())
    assert.equal(cache.get('a')?.toString(), 'page a')
    cache.invalidate([change('did:plc:a1')])
    assert.equal(cache.get('a'), undefined)
    cache.set('all', Buffer.from('all'), everything, cache.begin())
    cache.invalidateAll()
    assert.equal(cache.get('all'), undefined)
  })

  it('drops only the pages a change can appear on: patterns, sources, and the stretch a full page covers', () => {
    const cache = new QueryCache(1 << 20)
    const pages: Record<string, PageScope> = {
      prefixA: scope('did:plc:a*'),
      prefixB: scope('did:plc:b*'),
      exactA1: scope('did:plc:a1'),
      everything,
      otherSource: scope('did:plc:a*', { sources: ['did:plc:other'] }),
      // A full first page ending at a5, and the next page from a5 on.
      firstFull: scope('did:plc:a*', { to: 'did:plc:a5' }),
      second: scope('did:plc:a*', { from: 'did:plc:a5' }),
    }
    const fill = () => {
      for (const [k, s] of Object.entries(pages)) cache.set(k, Buffer.from(k), s, cache.begin())
    }
    const kept = () => Object.keys(pages).filter((k) => cache.get(k))
    fill()
    cache.invalidate([change('did:plc:b1')])
    assert.deepEqual(kept(), ['prefixA', 'exactA1', 'otherSource', 'firstFull', 'second'])
    fill()
    cache.invalidate([change('did:plc:a7')])
    assert.deepEqual(kept(), ['prefixB', 'exactA1', 'otherSource', 'firstFull'])
    fill()
    cache.invalidate([change('did:plc:a1')])
    assert.deepEqual(kept(), ['prefixB', 'otherSource', 'second'])
    fill()
    // The boundary URI may move on or off either page.
    cache.invalidate([change('did:plc:a5')])
    assert.deepEqual(kept(), ['prefixB', 'exactA1', 'otherSource'])
    fill()
    cache.invalidate([change('did:plc:a2', 'did:plc:other')])
    assert.deepEqual(kept(), ['prefixB', 'exactA1', 'second'])
    assert.equal(cache.size, 3)
  })

  it('never stores a page built across a change that can show on it; keeps one whose changes cannot', () => {
    const cache = new QueryCache(1024)
    const token = cache.begin()
    cache.invalidate([change('did:plc:a1')]) // a label changed while the page was being built
    cache.set('a', Buffer.from('stale'), scope('did:plc:a*'), token)
    assert.equal(cache.get('a'), undefined)
    cache.set('b', Buffer.from('fresh'), scope('did:plc:b*'), token)
    assert.equal(cache.get('b')?.toString(), 'fresh')
    const before = cache.begin()
    cache.invalidateAll()
    cache.set('c', Buffer.from('stale'), scope('did:plc:c*'), before)
    assert.equal(cache.get('c'), undefined)
    // More changes than it remembers since the page began: refused, whatever they were.
    const long = cache.begin()
    cache.invalidate(Array.from({ length: 5000 }, (_, i) => change(`did:web:x${i}`)))
    cache.set('d', Buffer.from('unknown'), scope('did:plc:d*'), long)
    assert.equal(cache.get('d'), undefined)
  })

  it('compares URIs in byte order, as the pages are ordered', () => {
    // U+FFFD sorts before U+1F600 in UTF-8 bytes but after its surrogates in UTF-16.
    const cache = new QueryCache(1024)
    cache.set('p', Buffer.from('p'), scope('x*', { to: 'x\u{1F600}' }), cache.begin())
    cache.invalidate([change('x\uFFFD')])
    assert.equal(cache.get('p'), undefined)
  })

  it('stays within its byte budget, dropping the least recently used', () => {
    const cache = new QueryCache(100)
    for (const k of ['a', 'b', 'c', 'd']) cache.set(k, Buffer.alloc(25, k), scope(`${k}*`), cache.begin())
    cache.get('a') // a is now the most recent
    cache.set('e', Buffer.alloc(25, 'e'), scope('e*'), cache.begin())
    assert.ok(cache.get('a'))
    assert.equal(cache.get('b'), undefined)
    assert.ok(cache.get('e'))
    const off = new QueryCache(0)
    off.set('a', Buffer.from('x'), everything, off.begin())
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
