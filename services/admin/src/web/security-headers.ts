import type { MiddlewareHandler } from 'hono'

// Scripts and styles only from our own /static (no inline, no CDN: the admin works
// offline); no framing; no Referer, so no URL of ours (an OAuth code, a search) leaks.
// No form-action: the sign-in form's answer redirects to the member's own PDS, which
// Chromium would check against form-action.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ')

export function securityHeaders(): MiddlewareHandler {
  return async (c, next) => {
    await next()
    c.header('Content-Security-Policy', CSP)
    c.header('Referrer-Policy', 'no-referrer')
    c.header('X-Content-Type-Options', 'nosniff')
    c.header('X-Frame-Options', 'DENY')
    if (!c.res.headers.get('cache-control')) c.header('Cache-Control', 'no-store')
  }
}
