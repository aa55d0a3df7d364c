// The labels both labelers serve in the labeler bench: the same count, URIs of the same
// shape (100 prefixes `did:plc:benchNN`, then three digits and one), one in ten negated,
// and signatures of the right size (not checked: the tests verify signatures; the load is
// the serving itself).

export const PREFIXES = 100
export const CTS = '2026-11-25T00:00:00.000Z'
export const SIG = Buffer.alloc(64, 0xab)

/** Label number g (1-based): its subject, value and whether it negates. */
export function benchLabel(g: number): { uri: string; val: string; neg: boolean } {
  const uri = `did:plc:bench${String(g % PREFIXES).padStart(2, '0')}${String(Math.floor(g / 100) % 1000).padStart(3, '0')}${g % 10}`
  return { uri, val: `val${Math.floor(g / 100_000)}`, neg: g % 10 === 3 }
}

/** The same as SQL over `g`, for Postgres' bulk load. */
export const BENCH_LABEL_SQL = {
  uri: `'did:plc:bench' || lpad((g % 100)::text, 2, '0') || lpad((g / 100 % 1000)::text, 3, '0') || (g % 10)::text`,
  val: `'val' || (g / 100000)::text`,
  neg: 'g % 10 = 3',
}

/** Subjects the churn writers label, one every 100 ms, spread over the prefixes. */
export function churnUri(n: number): string {
  const p = String((n * 37) % PREFIXES).padStart(2, '0')
  return `did:plc:bench${p}${String((n * 7919) % 1000).padStart(3, '0')}${n % 10}`
}
