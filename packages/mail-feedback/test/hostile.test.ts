import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { mailbox } from '../src/address/mailbox.ts'
import { classifyMessage } from '../src/index.ts'
import { BOUNCE_HEAD, CASES, dsn } from './hostile-cases.ts'

// The cases of hostile-cases.ts, each in a worker thread: a regular expression that
// backtracks holds the thread it runs on, and node:test's timeout (the one clock here,
// 30 s where a linear run takes well under a second) can only fire on a thread that is
// free. When it fires, the test fails and its worker is stopped. The bound is generous on
// purpose: a linear read takes under a second alone and 4–15 s on two cores shared with
// two other test files and more, while a quadratic one over a MiB takes hours, so 300 s
// still tells them apart and no busy machine fails a linear run.

const LIMIT = { timeout: 300_000 }

function inWorker(name: string, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./hostile-cases.ts', import.meta.url), { workerData: { case: name } })
    signal.addEventListener('abort', () => void worker.terminate(), { once: true })
    worker.once('message', (m: { ok: boolean; error?: string }) => {
      void worker.terminate()
      if (m.ok) resolve()
      else reject(new Error(m.error))
    })
    worker.once('error', reject)
  })
}

describe('text built to cost quadratic time, read in linear time', () => {
  for (const name of Object.keys(CASES)) it(name, LIMIT, (t) => inWorker(name, t.signal))
})

describe('random reports', () => {
  // A fixed seed: the same reports every run, so a failure can be replayed.
  function prng(seed: number) {
    let s = seed >>> 0
    return () => {
      s = (s * 1664525 + 1013904223) >>> 0
      return s / 2 ** 32
    }
  }
  const PIECES = [
    'Final-Recipient: rfc822; ',
    'Action: failed\n',
    'Status: 5.1.1\n',
    'Diagnostic-Code: smtp; 550 ',
    'alice@dest.example',
    '@',
    '<',
    '>',
    '\0',
    '=\n',
    '\n\n',
    '\t',
    'user unknown ',
    'client host ',
    '--b\n',
    'Content-Type: message/delivery-status\n\n',
    'X-Failed-Recipients: ',
    'é',
    '"',
    '.',
  ]

  it('never names anything but a valid address, whatever the pieces', LIMIT, async () => {
    const random = prng(5965)
    for (let n = 0; n < 200; n++) {
      let body = ''
      const count = 20 + Math.floor(random() * 400)
      for (let i = 0; i < count; i++) body += PIECES[Math.floor(random() * PIECES.length)]
      const top = n % 2 ? BOUNCE_HEAD : dsn('', body)
      const c = await classifyMessage(n % 2 ? top + body : top)
      for (const r of c.recipients) if (r.address) assert.equal(mailbox(r.address), r.address)
    }
  })
})
