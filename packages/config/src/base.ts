import { z } from 'zod'
import { field, section } from './fields.ts'

// The sections every service shares. The defaults are the machine's own servers:
// Postgres on 127.0.0.1:5432 with trust auth, Redis on 127.0.0.1:6379.

export const databaseSection = section({
  url: field.url('postgres://root@127.0.0.1:5432/atmos', ['postgres', 'postgresql']),
  poolMax: field.int(10, { min: 1, max: 200 }),
  connectTimeout: field.duration('5s'),
})

export const redisSection = section({
  url: field.url('redis://127.0.0.1:6379/0', ['redis', 'rediss']),
  /** Namespaces every bullmq key, so that several stacks (or test runs) share one Redis. */
  prefix: z
    .string()
    .regex(/^[a-zA-Z0-9_-]{1,64}$/, 'letters, digits, "_" and "-" only')
    .default('atmos'),
})

export const logSection = section({
  level: field.logLevel('info'),
})

export const httpSection = (defaultPort: number) =>
  section({
    host: field.string('127.0.0.1'),
    port: field.port(defaultPort),
  })

/** The whole config of one service: the shared sections plus its own, under its name. */
export function serviceConfigSchema<Name extends string, Own extends z.ZodType>(
  name: Name,
  opts: { httpPort: number; own: Own },
) {
  return z
    .object({
      database: databaseSection,
      redis: redisSection,
      log: logSection,
      http: httpSection(opts.httpPort),
      /** Time allowed for a graceful stop before the process gives up and exits non-zero. */
      shutdownTimeout: field.duration('9s'),
      [name]: opts.own,
    } as {
      database: typeof databaseSection
      redis: typeof redisSection
      log: typeof logSection
      http: ReturnType<typeof httpSection>
      shutdownTimeout: ReturnType<typeof field.duration>
    } & { [K in Name]: Own })
    .strict()
}

export type BaseConfig = {
  database: z.infer<typeof databaseSection>
  redis: z.infer<typeof redisSection>
  log: z.infer<typeof logSection>
  http: z.infer<ReturnType<typeof httpSection>>
  shutdownTimeout: number
}

/**
 * The pool's identity on the wire, shared by the relay (which writes it into every message)
 * and fbl-ingest (which reads it back out of bounces and reports).
 */
export const poolSection = section({
  /** The pool's own DKIM domain (`d=` of the second signature) and operator mail domain. */
  domain: field.string('atmos.localhost'),
  /** Envelope senders (VERP) live here; its MX is fbl-ingest. */
  bounceDomain: field.string('bounces.atmos.localhost'),
  /** Local-part prefix of VERP addresses: `<prefix>+<token>@<bounceDomain>`. */
  verpPrefix: z
    .string()
    .regex(/^[a-z0-9]{1,16}$/, 'lower-case letters and digits only')
    .default('b'),
  /** Gmail's Feedback-ID SenderId: constant, 5–15 characters. */
  feedbackSenderId: z
    .string()
    .regex(/^[A-Za-z0-9-]{5,15}$/, '5–15 letters, digits or dashes')
    .default('atmospool'),
  /** HMAC secret for VERP and reference tokens, in a file (mode 0600); the start command creates it. */
  tokenSecretFile: field.string('.state/pool/token.secret'),
  /**
   * Key-encryption keys that seal the pool's own DKIM key (same format as relay.kekFile). Only
   * this, never the relay's KEK, is given to processes that sign as the pool alone.
   */
  kekFile: field.string('.state/pool/kek'),
  /**
   * How many sending domains one member (one DID) may hold in the pool. The live
   * cooperative allows two during its alpha; each domain warms and is capped on its own.
   */
  maxDomainsPerMember: field.int(2, { min: 1, max: 100 }),
})

/**
 * Warming tiers: `<from day>:<recipients a day>` pairs, comma-separated, by age in days
 * since the domain's activation. Past the last tier the standard cap applies. Shared by the relay
 * (which enforces the caps) and the admin (which shows what is left of today's): one format, one default.
 */
export const warmingTiersField = z
  .preprocess(
    (v) =>
      typeof v === 'string'
        ? v
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
            .map((pair) => {
              const [fromDay, cap] = pair.split(':')
              return { fromDay: Number(fromDay), cap: Number(cap) }
            })
        : v,
    z
      .array(z.object({ fromDay: z.number().int().min(0), cap: z.number().int().min(0) }).strict())
      .refine((tiers) => tiers.every((t, i) => i === 0 || t.fromDay > tiers[i - 1]!.fromDay), {
        message: 'tiers must be in increasing order of day, e.g. "0:50,3:200,7:1000"',
      }),
  )
  .default([
    { fromDay: 0, cap: 50 },
    { fromDay: 3, cap: 200 },
    { fromDay: 7, cap: 1000 },
  ])

const rate = (fallback: number) => z.coerce.number().min(0).max(1).default(fallback)

/**
 * The thresholds of the clean-sender label over a member's last 30 days: issued when both
 * rates are below the issue rates with at least `minVolume` messages, negated when one reaches
 * its negate rate, left as it is in between (so a rate near a limit does not flip it daily).
 * Shared by the labeler (which decides) and the admin (which shows the member the figures
 * against them): one format, one default. Defaults as @atmos/reputation's DEFAULT_CLEAN_SENDER:
 * negation at fbl-ingest's warn levels, issue at less than half of them.
 */
export const cleanSenderSection = section({
  minVolume: field.int(100, { min: 1, max: 100_000_000 }),
  issueBounceRate: rate(0.02),
  negateBounceRate: rate(0.05),
  issueComplaintRate: rate(0.0005),
  negateComplaintRate: rate(0.001),
}).superRefine((t, ctx) => {
  if (!(t.issueBounceRate < t.negateBounceRate)) {
    ctx.addIssue({ code: 'custom', message: 'issueBounceRate must be below negateBounceRate' })
  }
  if (!(t.issueComplaintRate < t.negateComplaintRate)) {
    ctx.addIssue({ code: 'custom', message: 'issueComplaintRate must be below negateComplaintRate' })
  }
})
