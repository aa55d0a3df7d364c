import { z } from 'zod'

// Field builders for config schemas. Every value may arrive as a string (from the
// environment) or as its JSON type (from the config file), so each builder accepts both.

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

const TRUE = new Set(['true', '1', 'yes', 'on'])
const FALSE = new Set(['false', '0', 'no', 'off'])

export const field = {
  string: (fallback: string) => z.string().min(1).default(fallback),
  int: (fallback: number, range: { min?: number; max?: number } = {}) =>
    z.coerce
      .number()
      .int()
      .min(range.min ?? Number.MIN_SAFE_INTEGER)
      .max(range.max ?? Number.MAX_SAFE_INTEGER)
      .default(fallback),
  port: (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback),
  bool: (fallback: boolean) =>
    z
      .preprocess((v) => {
        if (typeof v !== 'string') return v
        const s = v.trim().toLowerCase()
        return TRUE.has(s) ? true : FALSE.has(s) ? false : v
      }, z.boolean())
      .default(fallback),
  /** Milliseconds; accepts "30s", "24h", "14d" or a number of milliseconds. */
  duration: (fallback: string) =>
    z
      .preprocess(
        (v) => (typeof v === 'string' ? parseDuration(v) : v),
        z.number({ error: 'expected a duration such as "30s", "24h" or "14d"' }).int().nonnegative(),
      )
      .default(parseDuration(fallback)),
  /** A list; from the environment as comma-separated values. */
  list: (fallback: string[]) =>
    z
      .preprocess(
        (v) =>
          typeof v === 'string'
            ? v
                .split(',')
                .map((s) => s.trim())
                .filter(Boolean)
            : v,
        z.array(z.string().min(1)),
      )
      .default(fallback),
  url: (fallback: string, protocols?: string[]) =>
    z
      .string()
      .refine((v) => URL.canParse(v), 'expected a URL')
      .refine(
        (v) => !protocols || protocols.includes(new URL(v).protocol.replace(/:$/, '')),
        `expected a URL with scheme ${protocols?.join(' or ')}`,
      )
      .default(fallback),
  logLevel: (fallback: 'info') =>
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default(fallback),
}

/** A nested section whose fields all have defaults: absent means "all defaults". */
export function section<T extends z.ZodRawShape>(shape: T) {
  // Every field has a default, so {} is a valid input; the generic shape cannot prove it.
  return z
    .object(shape)
    .strict()
    .prefault({} as never)
}
