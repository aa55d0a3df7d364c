import type { Db } from '@atmos/db'
import { InvalidRequestError, type Server } from '@atproto/xrpc-server'
import type postgres from 'postgres'
import { coveringPatterns, type Pattern, parsePattern } from './patterns.ts'
import type { QueryCache } from './query-cache.ts'

export { coveringPatterns, parsePattern } from './patterns.ts'

const MAX_PATTERNS = 100

type PageRow = { uri: string; seq: string; wire: string }

/**
 * A label as JSON for rows stored before `wire_json` existed (or written by hand): the
 * same bytes the writer stores, rendered by Postgres. `sig` is bytes in the atproto JSON
 * data model, `{"$bytes": "<base64, unpadded>"}`; absent optional fields are left out.
 */
const RENDERED_WIRE = `json_strip_nulls(json_build_object(
  'ver', ver, 'src', src, 'uri', uri, 'cid', cid, 'val', val,
  'neg', case when neg then true end, 'cts', cts, 'exp', exp,
  'sig', json_build_object('$bytes', rtrim(replace(encode(sig, 'base64'), E'\\n', ''), '='))
))::text`

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
export function registerQueryLabels(
  server: Server,
  db: Db,
  cache: QueryCache,
  onLatency: (seconds: number) => void,
  afterPageQuery?: () => Promise<void>,
) {
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
          select seq, uri, coalesce(wire_json, ${sql.unsafe(RENDERED_WIRE)}) as wire from labels
          where ${range} ${resume}
            ${sources.length ? sql`and src = any(${sources})` : sql``}
          order by (uri collate "C"), seq
          limit ${limit})`
      })
    if (!parts.length) return { encoding: 'application/json', buffer: Buffer.from('{"labels":[]}') }
    const union = parts.length === 1 ? parts[0]! : parts.reduce((acc, part) => sql`${acc} union all ${part}`)
    // Each label's JSON is stored with it (wire_json, written when it is signed): the page
    // is those strings joined. Rendering them here or in Postgres per request cost ten
    // times the index scan (see the README's Benchmarks). Rows come back in page order.
    const rows = await sql<PageRow[]>`
      select seq::text as seq, uri, wire from (${union}) u order by (uri collate "C"), seq limit ${limit}`
    if (afterPageQuery) await afterPageQuery()
    const last = rows.length === limit ? rows[rows.length - 1] : undefined
    const cursor = last ? encodeCursor({ uri: last.uri, seq: Number(last.seq) }) : undefined
    let labels = ''
    for (let i = 0; i < rows.length; i++) labels += i ? `,${rows[i]!.wire}` : rows[i]!.wire
    const buffer = Buffer.from(
      cursor === undefined ? `{"labels":[${labels}]}` : `{"cursor":${JSON.stringify(cursor)},"labels":[${labels}]}`,
    )
    cache.set(key, buffer, { patterns: parsed, sources, from: after.uri, to: last ? last.uri : null }, token)
    onLatency(Number(process.hrtime.bigint() - started) / 1e9)
    return { encoding: 'application/json', buffer }
  })
}
