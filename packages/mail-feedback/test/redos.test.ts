import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { check } from 'recheck'
import { type FoundRegex, REPO, scanSources, serviceSourceDirs } from './regex-scan.ts'

// Every regular expression that reads what strangers send must run in time linear in its
// input: a pattern that backtracks polynomially turns a 9 KB bounce into minutes of CPU in
// the process that also listens on port 25. recheck (an automaton-theoretic checker, with
// a fuzzer for what automata cannot model) judges each pattern written in the classifier,
// in packages/verify and in the services' sources.
//
// Each top-level alternative is judged on its own: the cost of `A|B` at a position is at
// most the cost of A there plus that of B, so the union is linear when every alternative
// is, and small patterns are judged exactly where the whole would time out. recheck runs
// without a clock: only its step limits bound it, so the verdict does not depend on how
// busy the machine is.

/**
 * No clock anywhere (only step limits), and bounded repetitions up to a few hundred in all
 * (`.{0,80}`) left to the exact automaton checker rather than the fuzzer.
 */
const PARAMS = {
  timeout: null,
  attackTimeout: null,
  incubationTimeout: null,
  seedingTimeout: null,
  maxRepeatCount: 200,
}

const TREES = [join(REPO, 'packages/mail-feedback/src'), join(REPO, 'packages/verify/src'), ...serviceSourceDirs()]

/** The top-level alternatives of a pattern (the pattern itself when it has backreferences). */
export function alternatives(source: string): string[] {
  if (/\\[1-9]|\\k</.test(source)) return [source]
  const out: string[] = []
  let depth = 0
  let inClass = false
  let current = ''
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!
    if (c === '\\') {
      current += c + (source[i + 1] ?? '')
      i++
      continue
    }
    if (inClass) inClass = c !== ']'
    else if (c === '[') inClass = true
    else if (c === '(') depth++
    else if (c === ')') depth--
    else if (c === '|' && depth === 0) {
      out.push(current)
      current = ''
      continue
    }
    current += c
  }
  out.push(current)
  return out
}

async function pool<T, R>(items: T[], size: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await work(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: size }, worker))
  return results
}

describe('regular expressions that read hostile input', () => {
  const { found, dynamic } = scanSources(TREES)

  it('are all written as constants, so that they can be checked', () => {
    assert.ok(found.length > 150, `only ${found.length} patterns found: the scan is broken`)
    assert.deepEqual(dynamic, [], 'a RegExp built at run time cannot be checked: write it as a constant')
  })

  it('all run in linear time (recheck)', { timeout: 600_000 }, async () => {
    const jobs = new Map<string, { source: string; flags: string; at: FoundRegex['at'][] }>()
    for (const f of found) {
      for (const source of alternatives(f.source)) {
        const key = `${f.flags}/${source}`
        const job = jobs.get(key) ?? { source, flags: f.flags, at: [] }
        job.at.push(f.at)
        jobs.set(key, job)
      }
    }
    const verdicts = await pool([...jobs.values()], 2, async (job) => ({
      job,
      d: await check(job.source, job.flags, PARAMS),
    }))
    const bad: string[] = []
    for (const { job, d } of verdicts) {
      const at = `${job.at.join(', ')}: /${job.source}/${job.flags}`
      if (d.status === 'vulnerable') bad.push(`${at} is ${d.complexity.type}, e.g. ${d.attack.pattern}`)
      else if (d.status === 'unknown') bad.push(`${at} is undecided: ${JSON.stringify(d.error)}`)
    }
    assert.deepEqual(bad, [])
  })
})
