/**
 * A timestamptz as a Date, whichever way the pool hands it over: postgres.js parses it into a
 * Date, but a pool made through drizzle (`db.$client`) keeps Postgres' text form
 * (`2026-12-07 07:39:34.1+00`), which Date.parse does not take as it is.
 */
export function asDate(v: unknown): Date {
  if (v instanceof Date) return v
  const text = String(v).replace(' ', 'T')
  return new Date(/[+-]\d\d$/.test(text) ? `${text}:00` : text)
}

export function asDateOrNull(v: unknown): Date | null {
  return v === null || v === undefined ? null : asDate(v)
}
