import { z } from 'zod'

/**
 * The labels our labeler publishes about one account, read the way any atproto client
 * reads them: `com.atproto.label.queryLabels` on the labeler's public endpoint. The admin
 * does not look in the labels table itself, so what a member sees is what the network sees.
 */

export type CurrentLabel = { val: string; cts: string; exp: string | null; src: string }

export type LabelsRead = { ok: true; labels: CurrentLabel[] } | { ok: false; reason: string }

const wireLabel = z.object({
  src: z.string().max(2048),
  uri: z.string().max(8192),
  val: z.string().max(128),
  neg: z.boolean().optional(),
  cts: z.string().max(64),
  exp: z.string().max(64).optional(),
})
const page = z.object({ cursor: z.string().max(512).optional(), labels: z.array(wireLabel).max(250) })

export type LabelReader = (did: string) => Promise<LabelsRead>

/**
 * A reader bound to the labeler at `baseUrl` (no trailing path). Only labels whose `uri` is
 * exactly the DID count (the pattern `did` is exact in queryLabels), only the labeler's own
 * `src` when `labelerDid` is given, and for each value the newest: a negation or an `exp` in
 * the past means the label is not current. The answer is bounded (one page of 250: an
 * account carries a handful) and the call times out after `timeoutMs`.
 */
export function labelReader(opts: { baseUrl: string; labelerDid?: string; timeoutMs?: number }): LabelReader {
  const timeoutMs = opts.timeoutMs ?? 5_000
  return async (did) => {
    if (!opts.baseUrl) return { ok: false, reason: 'the labeler address is not configured (admin.labeler.url)' }
    const url = new URL('/xrpc/com.atproto.label.queryLabels', opts.baseUrl)
    url.searchParams.append('uriPatterns', did)
    if (opts.labelerDid) url.searchParams.append('sources', opts.labelerDid)
    url.searchParams.set('limit', '250')
    let body: unknown
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' })
      if (!res.ok) return { ok: false, reason: `the labeler answered HTTP ${res.status}` }
      const text = await res.text()
      if (text.length > 1_000_000) return { ok: false, reason: 'the labeler answered more than expected' }
      body = JSON.parse(text)
    } catch (err) {
      const e = err as Error
      return {
        ok: false,
        reason: e.name === 'TimeoutError' ? 'the labeler did not answer in time' : 'the labeler could not be reached',
      }
    }
    const parsed = page.safeParse(body)
    if (!parsed.success) return { ok: false, reason: 'the labeler answered something that is not a label list' }
    return { ok: true, labels: currentLabels(parsed.data.labels, did, opts.labelerDid) }
  }
}

/** The newest label per (src, val) for `did`; values negated or expired are left out. */
export function currentLabels(
  labels: z.infer<typeof wireLabel>[],
  did: string,
  labelerDid?: string,
  now = new Date(),
): CurrentLabel[] {
  const newest = new Map<string, z.infer<typeof wireLabel>>()
  for (const l of labels) {
    if (l.uri !== did || (labelerDid && l.src !== labelerDid)) continue
    const key = `${l.src}\0${l.val}`
    const seen = newest.get(key)
    if (!seen || Date.parse(l.cts) >= Date.parse(seen.cts)) newest.set(key, l)
  }
  const out: CurrentLabel[] = []
  for (const l of newest.values()) {
    if (l.neg) continue
    if (l.exp && Date.parse(l.exp) <= now.getTime()) continue
    out.push({ val: l.val, cts: l.cts, exp: l.exp ?? null, src: l.src })
  }
  return out.sort((a, b) => a.val.localeCompare(b.val))
}
