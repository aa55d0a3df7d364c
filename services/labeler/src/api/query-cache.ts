import type { Pattern } from './patterns.ts'

/**
 * What a cached page can hold: its URI patterns and sources, and the stretch of the
 * (uri, seq) order it covers, from the cursor's URI (`''` without one) to its last
 * label's URI when it was full (`null`: to the end of its patterns, as a label added
 * anywhere after its start would show on it). Both ends are inclusive: a change to the
 * cursor's or the last label's URI can move a row of that URI on or off the page.
 */
export type PageScope = {
  patterns: Pattern[]
  /** Empty: every source. */
  sources: string[]
  from: string
  to: string | null
}

/** A label that changed: its subject and who labelled it (all a page's scope is about). */
export type ChangedLabel = { uri: string; src: string }

type Entry = { page: Buffer; scope: PageScope }

/** How many recent changes are remembered to judge a page built while they landed. */
const RECENT_CHANGES = 4096

/**
 * Byte order of the UTF-8 encodings, as Postgres' collation "C" orders pages (JavaScript's
 * `<` compares UTF-16 units, which differs above U+FFFF). Only called on changes.
 */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}

export function scopeHolds(scope: PageScope, change: ChangedLabel): boolean {
  if (scope.sources.length && !scope.sources.includes(change.src)) return false
  if (compareBytes(change.uri, scope.from) < 0) return false
  if (scope.to !== null && compareBytes(change.uri, scope.to) > 0) return false
  return scope.patterns.some((p) => (p.kind === 'exact' ? change.uri === p.uri : change.uri.startsWith(p.from)))
}

/**
 * Rendered queryLabels pages. Labels change seldom and are read often (every client that
 * shows an account asks), so a page is built once and served until a label that could
 * appear on it changes; a change elsewhere leaves it cached, so steady churn on some
 * subjects does not send every reader back to Postgres. Bounded by total bytes, least
 * recently used first.
 *
 * Pages are indexed by their patterns (exact URI, or prefix by length), so a change finds
 * the pages it can touch with a few map lookups instead of a scan of every page.
 *
 * A page built while changes landed is stored only if none of them falls in its scope:
 * the generation is read before the query and every change since is checked when the
 * page is offered (too many since, or a drop-everything change, refuses it). So a page
 * never outlives a change this process has heard of, even one that committed while the
 * page's query ran.
 */
export class QueryCache {
  private readonly entries = new Map<string, Entry>()
  private readonly byUri = new Map<string, Set<string>>()
  private readonly byPrefix = new Map<string, Set<string>>()
  /** Prefix lengths in use, with how many index keys use each: the slices a change looks up. */
  private readonly prefixLengths = new Map<number, number>()
  /** The last RECENT_CHANGES changes, the newest at generation `generation`. */
  private readonly recent: ChangedLabel[] = []
  private bytes = 0
  private generation = 0
  /** The generation of the last drop-everything change (a re-signing). */
  private clearedAt = 0
  hits = 0
  misses = 0
  private readonly maxBytes: number

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes
  }

  get enabled(): boolean {
    return this.maxBytes > 0
  }

  get size(): number {
    return this.entries.size
  }

  /** Every page may be stale (signatures changed): drop them all. */
  invalidateAll(): void {
    this.generation++
    this.clearedAt = this.generation
    this.recent.length = 0
    this.entries.clear()
    this.byUri.clear()
    this.byPrefix.clear()
    this.prefixLengths.clear()
    this.bytes = 0
  }

  /** These labels changed: drop the pages they can appear on, and only those. */
  invalidate(changes: Iterable<ChangedLabel>): void {
    for (const change of changes) {
      this.generation++
      this.recent.push(change)
      if (this.recent.length > RECENT_CHANGES) this.recent.shift()
      if (!this.entries.size) continue
      const candidates = new Set<string>(this.byUri.get(change.uri))
      for (const length of this.prefixLengths.keys()) {
        if (length > change.uri.length) continue
        for (const key of this.byPrefix.get(change.uri.slice(0, length)) ?? []) candidates.add(key)
      }
      for (const key of candidates) {
        const entry = this.entries.get(key)
        if (entry && scopeHolds(entry.scope, change)) this.remove(key, entry)
      }
    }
  }

  get(key: string): Buffer | undefined {
    const hit = this.entries.get(key)
    if (hit) {
      this.hits++
      // Map order is insertion order: re-insert to mark it recently used.
      this.entries.delete(key)
      this.entries.set(key, hit)
    } else this.misses++
    return hit?.page
  }

  /** A token to pass back to `set`, taken before the page is built. */
  begin(): number {
    return this.generation
  }

  /** Stores a page built since `token`, unless a change since then could show on it. */
  set(key: string, page: Buffer, scope: PageScope, token: number): void {
    if (!this.enabled || page.length > this.maxBytes / 4) return
    if (token !== this.generation) {
      const missed = this.generation - token
      if (token < this.clearedAt || missed > this.recent.length) return
      for (let i = this.recent.length - missed; i < this.recent.length; i++) {
        if (scopeHolds(scope, this.recent[i] as ChangedLabel)) return
      }
    }
    const old = this.entries.get(key)
    if (old) this.remove(key, old)
    this.entries.set(key, { page, scope })
    this.bytes += page.length
    for (const p of scope.patterns) {
      if (p.kind === 'exact') addTo(this.byUri, p.uri, key)
      else if (addTo(this.byPrefix, p.from, key)) {
        this.prefixLengths.set(p.from.length, (this.prefixLengths.get(p.from.length) ?? 0) + 1)
      }
    }
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break
      this.remove(k, v)
    }
  }

  private remove(key: string, entry: Entry): void {
    this.entries.delete(key)
    this.bytes -= entry.page.length
    for (const p of entry.scope.patterns) {
      if (p.kind === 'exact') removeFrom(this.byUri, p.uri, key)
      else if (removeFrom(this.byPrefix, p.from, key)) {
        const n = (this.prefixLengths.get(p.from.length) ?? 1) - 1
        if (n) this.prefixLengths.set(p.from.length, n)
        else this.prefixLengths.delete(p.from.length)
      }
    }
  }
}

/** Adds `key` under `index`; true when that index key is new. */
function addTo(map: Map<string, Set<string>>, index: string, key: string): boolean {
  const set = map.get(index)
  if (set) {
    set.add(key)
    return false
  }
  map.set(index, new Set([key]))
  return true
}

/** Removes `key` from under `index`; true when that index key is now gone. */
function removeFrom(map: Map<string, Set<string>>, index: string, key: string): boolean {
  const set = map.get(index)
  if (!set) return false
  set.delete(key)
  if (set.size) return false
  map.delete(index)
  return true
}
