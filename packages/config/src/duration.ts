// Apart from the field builders (src/fields.ts, which need zod) so that a CLI can check a
// duration argument, e.g. `--timeout 10m`, before anything heavier is loaded.

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
}

/** Parses "250ms", "30s", "5m", "24h", "14d", a bare number of milliseconds, or returns NaN. */
export function parseDuration(value: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(value)
  if (!match) return Number.NaN
  const unit = (match[2] ?? 'ms').toLowerCase()
  return Math.round(Number(match[1]) * (DURATION_UNITS[unit] ?? Number.NaN))
}
