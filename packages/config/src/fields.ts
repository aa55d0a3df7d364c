import { z } from 'zod'
import { parseDuration } from './duration.ts'

export { parseDuration }

// Field builders for config schemas. Every value may arrive as a string (from the
// environment) or as its JSON type (from the config file), so each builder accepts both.

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
  /**
   * A URL people's mail clients or browsers open: https, except on a loopback host (the local
   * stack and tests), since a plain-http link sent in mail can be read and rewritten on the way.
   */
  publicHttpsUrl: (fallback: string) =>
    z
      .string()
      .refine((v) => {
        const u = URL.canParse(v) ? new URL(v) : null
        return u?.protocol === 'https:' || (u?.protocol === 'http:' && isLoopbackHost(u.hostname))
      }, 'expected an https URL (http only on a loopback host)')
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

/** 127.0.0.0/8, ::1, localhost and *.localhost (RFC 6761): names that never leave the machine. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, '')
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}
