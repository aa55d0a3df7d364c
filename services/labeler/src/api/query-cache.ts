/**
 * Rendered queryLabels pages, kept until any label changes. Labels change seldom and are
 * read often (every client that shows an account asks), so a page is built once per
 * change instead of once per request. Bounded by total bytes, least recently used first.
 *
 * A page is stored only if no change arrived while it was being built: the generation
 * is read before the query and compared after, so a page can never outlive a change
 * this process has heard of.
 */
export class QueryCache {
  private readonly entries = new Map<string, Buffer>()
  private bytes = 0
  private generation = 0
  hits = 0
  misses = 0
  private readonly maxBytes: number

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes
  }

  get enabled(): boolean {
    return this.maxBytes > 0
  }

  /** Called whenever labels changed: every page may now be stale. */
  invalidate(): void {
    this.generation++
    this.entries.clear()
    this.bytes = 0
  }

  get(key: string): Buffer | undefined {
    const hit = this.entries.get(key)
    if (hit) {
      this.hits++
      // Map order is insertion order: re-insert to mark it recently used.
      this.entries.delete(key)
      this.entries.set(key, hit)
    } else this.misses++
    return hit
  }

  /** A token to pass back to `set`, taken before the page is built. */
  begin(): number {
    return this.generation
  }

  set(key: string, page: Buffer, token: number): void {
    if (!this.enabled || token !== this.generation || page.length > this.maxBytes / 4) return
    this.entries.set(key, page)
    this.bytes += page.length
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break
      this.entries.delete(k)
      this.bytes -= v.length
    }
  }
}
