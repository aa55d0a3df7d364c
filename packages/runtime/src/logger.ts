import { pino } from 'pino'

export type Logger = pino.Logger

/**
 * Field names whose values never reach a log line, wherever they sit in a logged object:
 * DKIM private keys, SMTP passwords, the label signing key, OAuth tokens.
 */
export const REDACTED_KEYS = [
  'password',
  'pass',
  'passwordHash',
  'privateKey',
  'privateKeyPem',
  'signingKey',
  'secret',
  'token',
  'accessToken',
  'refreshToken',
  'authorization',
  'kek',
]

const redactPaths = REDACTED_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`])

/** JSON lines on stdout; one logger per process, children per concern. */
export function createLogger(service: string, level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      name: service,
      level,
      base: { service, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: redactPaths, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ sync: true }),
  )
}
