import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Classification, classifyMessage } from '../src/index.ts'

// Scoring against ../shared/bounces as its README says: predicted and expected recipients
// paired by order; hard/soft agreement, exact status where the expected one is real (not
// the reference classifier's invented x.0.9xx), reply code, and non-bounces kept apart.

export const CORPUS =
  process.env.ATMOS_BOUNCE_CORPUS ?? new URL('../../../../shared/bounces/', import.meta.url).pathname

export interface ExpectedRecipient {
  status: string
  replycode: string
  reason: string
  hardbounce: boolean
  pseudostatus?: boolean
  feedbacktype?: string
}

export interface ExpectedFile {
  file: string
  recipients: ExpectedRecipient[]
  notBounce?: boolean
}

export function loadExpected(): ExpectedFile[] {
  return JSON.parse(readFileSync(join(CORPUS, 'expected.json'), 'utf8')) as ExpectedFile[]
}

export function corpusFiles(): string[] {
  return readdirSync(join(CORPUS, 'eml')).filter((f) => f.endsWith('.eml'))
}

/** LF → CRLF the way a Windows MTA would write it (lines already ending CRLF stay as they are). */
export function toCrlf(raw: Buffer): Buffer {
  return Buffer.from(raw.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1')
}

const BOUNCE_KINDS = new Set(['dsn', 'plain_bounce'])

export interface Tally {
  n: number
  ok: number
}

export interface Score {
  recipients: number
  hard: Tally
  status: Tally
  replyCode: Tally
  reason: Tally
  nonBounces: Tally
  failures: string[]
}

const pct = (t: Tally) => (t.n ? (100 * t.ok) / t.n : 100)

export function formatScore(s: Score): string {
  const f = (name: string, t: Tally) => `${name} ${t.ok}/${t.n} (${pct(t).toFixed(1)} %)`
  return [
    `recipients expected: ${s.recipients}`,
    f('hard/soft agreement', s.hard),
    f('status exact (non-pseudo)', s.status),
    f('reply code', s.replyCode),
    f('reason class', s.reason),
    f('non-bounces kept apart', s.nonBounces),
  ].join('\n')
}

export function percent(t: Tally): number {
  return pct(t)
}

export function score(expected: ExpectedFile[], results: Map<string, Classification>): Score {
  const s: Score = {
    recipients: 0,
    hard: { n: 0, ok: 0 },
    status: { n: 0, ok: 0 },
    replyCode: { n: 0, ok: 0 },
    reason: { n: 0, ok: 0 },
    nonBounces: { n: 0, ok: 0 },
    failures: [],
  }
  for (const e of expected) {
    const got = results.get(e.file)
    if (!got) throw new Error(`no result for ${e.file}`)
    const nonBounce = e.notBounce || e.recipients.some((r) => r.reason === 'feedback' || r.reason === 'vacation')
    if (nonBounce) {
      s.nonBounces.n++
      if (!BOUNCE_KINDS.has(got.kind)) s.nonBounces.ok++
      else s.failures.push(`${e.file}: counted as a bounce (${got.kind})`)
    }
    e.recipients.forEach((want, i) => {
      const r = got.recipients[i]
      s.recipients++
      const tally = (t: Tally, ok: boolean, what: string) => {
        t.n++
        if (ok) t.ok++
        else
          s.failures.push(
            `${e.file}#${i}: ${what} (${got.kind} ${r?.address ?? '-'} ${r?.diagnostic.slice(0, 160) ?? ''})`,
          )
      }
      tally(
        s.hard,
        (r?.hard ?? false) === want.hardbounce && !!r,
        `hard ${r?.hard} want ${want.hardbounce} [${r?.reason} want ${want.reason}]`,
      )
      if (want.status && !want.pseudostatus)
        tally(s.status, r?.status === want.status, `status ${r?.status} want ${want.status}`)
      tally(s.replyCode, (r?.replyCode ?? '') === want.replycode, `reply ${r?.replyCode} want ${want.replycode}`)
      s.reason.n++
      if (r?.reason === want.reason) s.reason.ok++
    })
  }
  return s
}

export async function classifyCorpus(transform: (raw: Buffer) => Buffer = (b) => b) {
  const results = new Map<string, Classification>()
  for (const f of corpusFiles()) {
    const raw = transform(readFileSync(join(CORPUS, 'eml', f)))
    results.set(`eml/${f}`, await classifyMessage(raw))
  }
  return results
}
