import type { Db } from '@atmos/db'
import { InvalidRequestError, type Server } from '@atproto/xrpc-server'
import type postgres from 'postgres'
import type { QueryCache } from './query-cache.ts'

const MAX_PATTERNS = 100

type PageRow = { labels: string; n: number; last_uri: string | null; last_seq: string | null }

type Pattern = { kind: 'prefix'; from: string; to: string | null } | { kind: 'exact'; uri: string }

/**
 * A pattern ending in `*` means "starts with" (the lexicon: "inclusive of the string
 * leading to '*'"), so `*` alone matches every URI; a `*` anywhere else is refused, not
 * read as a literal. A prefix becomes the byte-order range [prefix, next) where `next` is
 * the prefix with its last code point incremented: exact under collation "C", and an
 * index range even in a generic plan (a `like $1` would not be).
 */
export function parsePattern(pattern: string): Pattern {
  const star = pattern.indexOf('*')
  if (star === -1) return { kind: 'exact', uri: pattern }
  if (star !== pattern.length - 1) {
    throw new InvalidRequestError(`uriPatterns may hold "*" only as the last character, as in "did:plc:*"`)
  }
  const prefix = pattern.slice(0, -1)
  const points = Array.from(prefix)
  const last = points.pop()?.codePointAt(0)
  // Everything (`*`), or U+10FFFF that has no successor (and lone surrogates that sort
  // oddly): the range stays open above.
  const to =
    last === undefined || last >= 0x10ffff || (last >= 0xd7ff && last <= 0xdfff)
      ? null
      : points.join('') + String.fromCodePoint(last + 1)
  return { kind: 'prefix', from: prefix, to }
}

/**
 * The patterns that add something: a pattern another one already covers (a longer prefix,
 * a URI under a prefix, the same pattern twice) would return its labels twice, and `*`
 * covers every other one.
 */
export function coveringPatterns(patterns: Pattern[]): Pattern[] {
  const covers = (p: Pattern, q: Pattern) =>
    p.kind === 'prefix'
      ? (q.kind === 'prefix' ? q.from : q.uri).startsWith(p.from)
      : q.kind === 'exact' && q.uri === p.uri
  const kept: Pattern[] = []
  for (const [i, q] of patterns.entries()) {
    const redundant = patterns.some((p, j) => {
      if (j === i || !covers(p, q)) return false
      // Of two that cover each other (the same pattern twice), the first stays.
      return !covers(q, p) || j < i
    })
    if (!redundant) kept.push(q)
  }
  return kept
}

/** Where a pattern's scan starts: after the cursor if it lies in or past the range, else at the range. */
function lowerBound(p: Pattern): string {
  return p.kind === 'prefix' ? p.from : p.uri
}

/** The cursor is the last (uri, seq) returned; opaque to clients. */
export function encodeCursor(row: { uri: string; seq: number }): string {
  return `${row.seq}:${Buffer.from(row.uri).toString('base64url')}`
}

export function decodeCursor(cursor: string): { uri: string; seq: number } {
  const match = /^(\d{1,15}):([A-Za-z0-9_-]{0,4000})$/.exec(cursor)
  if (!match) throw new InvalidRequestError('cursor must be one returned by an earlier page')
  return { seq: Number(match[1]), uri: Buffer.from(match[2] as string, 'base64url').toString() }
}

/**
 * com.atproto.label.queryLabels: the current state of every label matching the URI
 * patterns (and sources). Each (src, uri, val) is one row in its latest state, so a
 * label appears at most once. Pages run in (uri, seq) byte order, each pattern one range
 * of the (uri collate "C", seq) index, merged.
 */
export function registerQueryLabels(server: Server, db: Db, cache: QueryCache, onLatency: (seconds: number) => void) {
  const sql = db.$client as postgres.Sql
  server.method('com.atproto.label.queryLabels', async ({ params }) => {
    const started = process.hrtime.bigint()
    const patterns = params.uriPatterns as string[]
    const sources = (params.sources as string[] | undefined) ?? []
    const limit = (params.limit as number | undefined) ?? 50
    if (!patterns.length) throw new InvalidRequestError('uriPatterns must name at least one pattern')
    if (patterns.length > MAX_PATTERNS)
      throw new InvalidRequestError(`uriPatterns may hold at most ${MAX_PATTERNS} patterns`)
    const parsed = coveringPatterns(patterns.map(parsePattern))
    const after = params.cursor === undefined ? { uri: '', seq: 0 } : decodeCursor(params.cursor as string)
    const key = JSON.stringify([patterns, sources, limit, params.cursor ?? ''])
    const cached = cache.get(key)
    if (cached) {
      onLatency(Number(process.hrtime.bigint() - started) / 1e9)
      return { encoding: 'application/json', buffer: cached }
    }
    const token = cache.begin()

    const parts = parsed
      // An exact URI the cursor has passed has nothing left to give.
      .filter((p) => !(p.kind === 'exact' && after.uri > p.uri))
      .map((p) => {
        const range =
          p.kind === 'exact'
            ? sql`(uri collate "C") = ${p.uri}`
            : p.to === null
              ? sql`(uri collate "C") >= ${p.from} and starts_with(uri, ${p.from})`
              : sql`(uri collate "C") >= ${p.from} and (uri collate "C") < ${p.to}`
        // Only a cursor inside or past the range narrows it; one before it would make the
        // planner start the scan at the cursor, far below the range.
        const resume =
          after.uri >= lowerBound(p) ? sql`and ((uri collate "C"), seq) > (${after.uri}, ${after.seq})` : sql``
        return sql`(
          select seq, ver, src, uri, cid, val, neg, cts, exp, sig from labels
          where ${range} ${resume}
            ${sources.length ? sql`and src = any(${sources})` : sql``}
          order by (uri collate "C"), seq
          limit ${limit})`
      })
    if (!parts.length) return { encoding: 'application/json', buffer: Buffer.from('{"labels":[]}') }
    const union = parts.reduce((acc, part) => sql`${acc} union all ${part}`)
    // Postgres renders the page as JSON itself: this is the hot path, and building 250
    // objects in Node costs more than the query. `sig` is bytes in the atproto JSON data
    // model, `{"$bytes": "<base64, unpadded>"}`; absent optional fields are left out.
    const [page] = await sql<PageRow[]>`
      with page as (select * from (${union}) u order by (uri collate "C"), seq limit ${limit})
      select
        coalesce(json_agg(json_strip_nulls(json_build_object(
          'ver', ver, 'src', src, 'uri', uri, 'cid', cid, 'val', val,
          'neg', case when neg then true end, 'cts', cts, 'exp', exp,
          'sig', json_build_object('$bytes', rtrim(replace(encode(sig, 'base64'), E'\\n', ''), '='))
        )) order by (uri collate "C"), seq), '[]')::text as labels,
        count(*)::int as n,
        (array_agg(uri order by (uri collate "C") desc, seq desc))[1] as last_uri,
        (array_agg(seq order by (uri collate "C") desc, seq desc))[1]::text as last_seq
      from page`
    const cursor =
      page && page.n === limit ? encodeCursor({ uri: page.last_uri as string, seq: Number(page.last_seq) }) : undefined
    const labels = page?.labels ?? '[]'
    const buffer = Buffer.from(
      cursor === undefined ? `{"labels":${labels}}` : `{"cursor":${JSON.stringify(cursor)},"labels":${labels}}`,
    )
    cache.set(key, buffer, token)
    onLatency(Number(process.hrtime.bigint() - started) / 1e9)
    return { encoding: 'application/json', buffer }
  })
}
