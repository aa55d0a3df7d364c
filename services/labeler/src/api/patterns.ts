import { InvalidRequestError } from '@atproto/xrpc-server'

export type Pattern = { kind: 'prefix'; from: string; to: string | null } | { kind: 'exact'; uri: string }

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
