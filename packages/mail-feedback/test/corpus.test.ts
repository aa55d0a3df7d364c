import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import type { Classification } from '../src/index.ts'
import { classifyCorpus, formatScore, loadExpected, percent, type Score, score, toCrlf } from './corpus.ts'

// The real-bounce corpus (../shared/bounces, sisimai's set-of-emails with its answers):
// agreement is printed and held at what the rules reach, so a change that loses a case
// fails here. The same files with CRLF line endings must give identical answers.

describe('bounce corpus', () => {
  let lf: Map<string, Classification>
  let s: Score

  before(async () => {
    lf = await classifyCorpus()
    s = score(loadExpected(), lf)
    console.log(formatScore(s))
    for (const f of s.failures) console.log(`  disagrees: ${f}`)
  })

  it('agrees on hard/soft for at least 98 % of recipients, and no less than it reached', () => {
    assert.ok(percent(s.hard) >= 98, `hard/soft agreement ${percent(s.hard).toFixed(1)} %`)
    assert.ok(s.hard.ok >= 259, `hard/soft agreement fell to ${s.hard.ok}/${s.hard.n}`)
  })

  it('reads the status code, reply code and reason class as well as it did', () => {
    assert.ok(s.status.ok >= 195, `status exact ${s.status.ok}/${s.status.n}`)
    assert.ok(s.replyCode.ok >= 262, `reply code ${s.replyCode.ok}/${s.replyCode.n}`)
    assert.ok(s.reason.ok >= 240, `reason class ${s.reason.ok}/${s.reason.n}`)
  })

  it('never counts a complaint, an auto-reply or plain mail as a bounce', () => {
    assert.equal(s.nonBounces.ok, s.nonBounces.n)
    assert.ok(s.nonBounces.n >= 9)
  })

  it('gives identical answers for the same files with CRLF line endings', async () => {
    const crlf = await classifyCorpus(toCrlf)
    assert.equal(crlf.size, lf.size)
    for (const [file, want] of lf) assert.deepEqual(crlf.get(file), want, file)
  })
})
