import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Batcher } from '../src/index.ts'

describe('Batcher', () => {
  it('runs the calls of one event-loop turn as one batch, each getting its own result', async () => {
    const batches: number[][] = []
    const b = new Batcher(async (xs: number[]) => {
      batches.push(xs)
      return xs.map((x) => x * 2)
    })
    const results = await Promise.all([1, 2, 3].map((x) => b.call(x)))
    assert.deepEqual(results, [2, 4, 6])
    assert.deepEqual(batches, [[1, 2, 3]])
    assert.equal(await b.call(5), 10)
    assert.deepEqual(batches.at(-1), [5], 'a later call is a batch of its own')
  })

  it('caps the batch size', async () => {
    const sizes: number[] = []
    const b = new Batcher(
      async (xs: number[]) => {
        sizes.push(xs.length)
        return xs
      },
      { maxSize: 4 },
    )
    await Promise.all(Array.from({ length: 10 }, (_, i) => b.call(i)))
    assert.deepEqual(sizes, [4, 4, 2])
  })

  it('retries each input alone when a batch fails, so one bad input fails only its own call', async () => {
    const b = new Batcher(async (xs: number[]) => {
      if (xs.includes(13)) throw new Error(`unlucky ${xs.join(',')}`)
      return xs.map(String)
    })
    const results = await Promise.allSettled([1, 13, 2].map((x) => b.call(x)))
    assert.deepEqual(
      results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)),
      ['1', 'unlucky 13', '2'],
    )
  })

  it('fails every call of a batch that returns the wrong number of results', async () => {
    const b = new Batcher(async (xs: number[]) => xs.slice(1))
    const results = await Promise.allSettled([1, 2].map((x) => b.call(x)))
    assert.ok(results.every((r) => r.status === 'rejected'))
  })
})
