import type { Db } from '@atmos/db'
import { labels } from '@atmos/db'
import { InvalidRequestError, type Server } from '@atproto/xrpc-server'
import { and, asc, eq, gt, inArray, like, or, type SQL } from 'drizzle-orm'
import { labelView, rowToLabel } from '../labels/rows.ts'

/** `*` only as the last character means "starts with"; anywhere else it is a literal. */
export function uriCondition(pattern: string): SQL {
  if (pattern.endsWith('*')) {
    const prefix = pattern.slice(0, -1).replace(/[\\%_]/g, (c) => `\\${c}`)
    return like(labels.uri, `${prefix}%`)
  }
  return eq(labels.uri, pattern)
}

/**
 * com.atproto.label.queryLabels: the current state of every label matching the URI
 * patterns (and sources), oldest change first, paged by seq. Each (src, uri, val) is one
 * row in its latest state, so a label appears at most once.
 */
export function registerQueryLabels(server: Server, db: Db, onLatency: (seconds: number) => void) {
  server.method('com.atproto.label.queryLabels', async ({ params }) => {
    const started = process.hrtime.bigint()
    const patterns = params.uriPatterns as string[]
    const sources = (params.sources as string[] | undefined) ?? []
    const limit = (params.limit as number | undefined) ?? 50
    const cursorParam = params.cursor as string | undefined
    if (!patterns.length) throw new InvalidRequestError('uriPatterns must name at least one pattern')
    if (patterns.length > 100) throw new InvalidRequestError('uriPatterns may hold at most 100 patterns')
    if (patterns.some((p) => p === '*')) throw new InvalidRequestError('uriPatterns "*" alone would match everything')
    let cursor = 0
    if (cursorParam !== undefined) {
      if (!/^\d{1,15}$/.test(cursorParam))
        throw new InvalidRequestError('cursor must be a number returned by an earlier page')
      cursor = Number(cursorParam)
    }
    const conditions = [gt(labels.seq, cursor), or(...patterns.map(uriCondition))!]
    if (sources.length) conditions.push(inArray(labels.src, sources))
    const rows = await db
      .select()
      .from(labels)
      .where(and(...conditions))
      .orderBy(asc(labels.seq))
      .limit(limit)
    onLatency(Number(process.hrtime.bigint() - started) / 1e9)
    return {
      encoding: 'application/json',
      body: {
        cursor: rows.length === limit ? String(rows[rows.length - 1]!.seq) : undefined,
        labels: rows.map((r) => labelView(rowToLabel(r))),
      },
    }
  })
}
