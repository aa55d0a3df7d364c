import { field, parseDuration, section } from '@atmos/config'
import { z } from 'zod'
import { parseCidr } from './address-policy.ts'

/** Limits for one MX site: every process delivering to it shares them through Redis. */
const siteLimits = z
  .object({
    /** Connections open at once to the site, across every delivery process. */
    maxConnections: z.coerce.number().int().min(1).max(1000),
    /** Messages sent over one connection before it is closed and a fresh one opened. */
    messagesPerConnection: z.coerce.number().int().min(1).max(100_000),
  })
  .strict()

/** A known provider: MX hosts ending in one of `mxSuffixes` form one site, whatever domain they serve. */
const siteRule = siteLimits
  .extend({
    name: z.string().regex(/^[a-z0-9-]{1,64}$/, 'lower-case letters, digits and dashes'),
    mxSuffixes: z.array(z.string().min(1)).min(1),
  })
  .strict()

export type SiteLimits = z.output<typeof siteLimits>
export type SiteRule = z.output<typeof siteRule>

/** Gmail and Outlook document 5 connections and about 50 messages each; Yahoo 20 messages a connection. */
export const DEFAULT_SITE_RULES: SiteRule[] = [
  {
    name: 'gmail',
    mxSuffixes: ['google.com', 'googlemail.com'],
    maxConnections: 5,
    messagesPerConnection: 50,
  },
  {
    name: 'outlook',
    mxSuffixes: ['protection.outlook.com', 'outlook.com', 'hotmail.com'],
    maxConnections: 5,
    messagesPerConnection: 50,
  },
  {
    name: 'yahoo',
    mxSuffixes: ['yahoodns.net', 'yahoo.com', 'aol.com'],
    maxConnections: 5,
    messagesPerConnection: 20,
  },
]

const duration = z.preprocess(
  (v) => (typeof v === 'string' ? parseDuration(v) : v),
  z.number({ error: 'expected a duration such as "30s", "24h" or "14d"' }).int().nonnegative(),
)

/** A list given as JSON text in the environment, or as an array in the config file. */
const jsonList = <T extends z.ZodType>(item: T, fallback: z.input<T>[]) =>
  z
    .preprocess((v) => {
      if (typeof v !== 'string') return v
      try {
        return JSON.parse(v)
      } catch {
        return v
      }
    }, z.array(item))
    .default(fallback as never)

/** Delivery to recipients' MX hosts: DNS, SMTP client, shaping per MX site, retries. */
export const deliverySection = section({
  /** Port the recipients' MX hosts listen on: 25, except in tests. */
  mxPort: field.port(25),
  /** Name sent in EHLO; empty: the pool domain. */
  heloName: z.string().default(''),
  /** Delivery jobs one process works on at once (each holds at most one connection). */
  concurrency: field.int(50, { min: 1, max: 1000 }),

  /** DNS servers MX lookups ask; empty: the machine's resolvers (/etc/resolv.conf). */
  dnsServers: field.list([]),
  /** Port for dnsServers entries that do not name one; 0: 53. */
  dnsPort: field.port(0),
  dnsTimeout: field.duration('5s'),
  dnsTries: field.int(2, { min: 1, max: 5 }),
  /** How long a resolved route is reused in this process; 0 asks DNS every time. */
  dnsCacheTtl: field.duration('60s'),

  /**
   * The resolvers in dnsServers validate DNSSEC and the path to them is trusted (loopback
   * or a link the operator controls): their AD bit is believed, and DANE TLSA records
   * (RFC 7672) are honoured for MX hosts whose MX and TLSA answers it authenticates.
   * Off: DANE is never used, as Postfix without `smtp_dns_support_level = dnssec`.
   */
  dnssec: field.bool(false),
  /** PEM file of CA certificates trusted besides the system's when verifying MX and MTA-STS hosts; empty: none. */
  tlsCaFile: z.string().default(''),
  /** Honour MTA-STS (RFC 8461) policies recipient domains publish. */
  mtaSts: field.bool(true),
  /** Port MTA-STS policies are fetched from: 443, except in tests. */
  mtaStsPort: field.port(443),
  /** Whole fetch of one MTA-STS policy (connect, TLS, response). */
  mtaStsTimeout: field.duration('10s'),

  /**
   * Internal networks (CIDR) the relay may still deliver to. MX and A answers in loopback,
   * private, link-local, CGNAT, multicast or reserved ranges are refused otherwise; tests
   * and the local stack list their loopback sinks here.
   */
  allowedPrivateNetworks: field
    .list([])
    .refine((list) => list.every((n) => parseCidr(n)), 'expected networks in CIDR notation, such as 127.0.0.0/8'),

  /** TCP connect, greeting and STARTTLS, and idle time on a command: each bounds one attempt. */
  connectTimeout: field.duration('30s'),
  greetingTimeout: field.duration('30s'),
  socketTimeout: field.duration('5m'),

  /**
   * Waits before each retry after a temporary failure; the last one repeats until the
   * message expires (2m, 5m, 10m, 15m, 30m, 1h, 2h, then every 4h).
   */
  retrySchedule: z
    .preprocess((v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v), z.array(duration).min(1))
    .default([120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000]),
  /** Undelivered this long after it was received, a message bounces as expired (also capped by messages.expires_at). */
  maxAge: field.duration('3d'),
  /**
   * When a member's recipient bounces (a 5xx or expiry), send the message's envelope sender
   * an RFC 3464 bounce notice, signed with the pool's DKIM key (at most one a message).
   */
  bounceNotices: field.bool(true),
  /** How long a hard bounce keeps the address on the member's suppression list. */
  bounceSuppression: field.duration('30d'),

  /**
   * A recipient is claimed in Postgres for this long while an attempt runs (renewed as it
   * goes); a worker killed mid-attempt loses it after this and another worker takes over.
   */
  claimLease: field.duration('2m'),
  /** How often spooled recipients that are due and have no job are re-enqueued. */
  reconcileInterval: field.duration('1m'),
  /**
   * A message's body (the bulk of the spool) is dropped this long after its last recipient
   * was delivered or bounced; the row and its attempts stay for attribution and history.
   * 0 keeps bodies for good.
   */
  bodyRetention: field.duration('7d'),

  shaping: section({
    /** Limits of a site no rule names (keyed by the MX hosts' parent domain). */
    maxConnections: field.int(10, { min: 1, max: 1000 }),
    messagesPerConnection: field.int(100, { min: 1, max: 100_000 }),
    /** Known providers; each rule's MX hosts form one site. */
    sites: jsonList(siteRule, DEFAULT_SITE_RULES),
    /** A connection slot held by a process that died frees itself after this. */
    slotLease: field.duration('60s'),
    /** How long a delivery waits for a free connection to its site before it is put back (not counted as an attempt). */
    slotWait: field.duration('30s'),
    /** An idle connection is closed (and its slot freed) after this. */
    idleTimeout: field.duration('5s'),
    /** After a site defers for reputation (421, 4.7.x, "try again later"), it runs slower for this long. */
    slowDownFor: field.duration('10m'),
    /** Connections to a slowed-down site. */
    slowDownConnections: field.int(1, { min: 1, max: 1000 }),
    /** Messages per second to a slowed-down site (a token bucket shared by every process). */
    slowDownRate: z.coerce.number().positive().default(1),
  }),
})

export type DeliveryConfig = z.output<typeof deliverySection>
