/** Error codes of a peer that cannot be reached (as opposed to one that answers with an error). */
export const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'CONNECT_TIMEOUT',
])

type ErrorLike = { message?: unknown; code?: unknown; errors?: unknown; cause?: unknown }

/**
 * The code and a readable message of an error from a database or Redis client. Node's
 * connect to a name with several addresses (localhost: ::1 and 127.0.0.1) fails with an
 * AggregateError whose message is empty: the cause is in its `errors`, and is what an
 * operator needs to read.
 */
export function describeError(err: unknown): { code: string | undefined; message: string } {
  const e = (err ?? {}) as ErrorLike
  const inner = [
    ...(Array.isArray(e.errors) ? (e.errors as ErrorLike[]) : []),
    ...(e.cause && typeof e.cause === 'object' ? [e.cause as ErrorLike] : []),
  ]
  const code =
    (typeof e.code === 'string' && e.code) ||
    inner.map((i) => (typeof i.code === 'string' ? i.code : '')).find(Boolean) ||
    undefined
  const own = typeof e.message === 'string' ? e.message : String(err)
  const innerMessages = inner.map((i) => (typeof i.message === 'string' ? i.message : '')).filter(Boolean)
  // A wrapper (drizzle's "Failed query: <the SQL>") says what was tried, its cause why it failed:
  // the why is what an operator acts on.
  const message =
    !own || (typeof e.code !== 'string' && innerMessages.length)
      ? innerMessages.join('; ') || own || code || 'unknown error'
      : own
  return { code, message }
}

/** Whether the error says the peer could not be reached at all. */
export function isNetworkError(err: unknown): boolean {
  const { code } = describeError(err)
  return code !== undefined && NETWORK_ERROR_CODES.has(code)
}

/** host:port of a connection URL, without the credentials it may carry. */
export function urlTarget(url: string, defaultPort: number): string {
  try {
    const u = new URL(url)
    // postgres://…?host=/run/postgresql names a socket directory; show it rather than nothing.
    const host = u.hostname || u.searchParams.get('host') || 'localhost'
    return `${host}:${u.port || defaultPort}`
  } catch {
    return 'an invalid URL'
  }
}

/**
 * The level for an error a retry loop will meet again: a dependency that cannot be reached is
 * said once by the dependency watch, so each retry's failure is debug; anything else a warning.
 */
export function retryLogLevel(err: unknown): 'debug' | 'warn' {
  return isNetworkError(err) ? 'debug' : 'warn'
}

/** The fields to log an error by: its readable cause and code. */
export function errorFields(err: unknown): { err: string; code?: string } {
  const { code, message } = describeError(err)
  return code ? { err: message, code } : { err: message }
}
