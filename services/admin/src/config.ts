import { cleanSenderSection, field, section, serviceConfigSchema, warmingTiersField } from '@atmos/config'
import { z } from 'zod'
import { enrollSection } from './enroll/config.ts'

/** The admin's own settings, under `admin` in the config file and `ATMOS_ADMIN_*` in the environment. */
export const adminSection = section({
  /** The web endpoint (the operator API; the members' dashboard and wizard join it). */
  web: section({
    host: field.string('127.0.0.1'),
    port: field.port(3000),
  }),
  /**
   * A secret file holding the operators' bearer token (`openssl rand -hex 32`); empty turns
   * the operator API off. Same permission rule as every secret file (0600, or 0640 root-owned).
   */
  operatorTokenFile: z.string().default(''),
  /**
   * The pool's token secret (the relay's `relay.pool.tokenSecretFile`, the same file), which
   * verifies the one-click unsubscribe tokens of /u/. Unreadable: /u/ answers 503, the rest runs.
   */
  tokenSecretFile: field.string('.state/pool/token.secret'),
  /** The enrollment wizard (`ATMOS_ADMIN_ENROLL_*`): records to propose, check-now, the relay's key file. */
  enroll: enrollSection,
  /** Sending domains one member may hold: keep equal to the relay's `relay.pool.maxDomainsPerMember`. */
  maxDomainsPerMember: field.int(2, { min: 1, max: 100 }),
  /**
   * The relay's warming tiers and standard daily cap, for the account page's "today's cap and
   * what is left": keep equal to `relay.submission.warmingTiers` and `relay.submission.dailyCap`
   * (the same format and defaults; the admin computes the cap with the relay's own dailyCapFor).
   */
  warmingTiers: warmingTiersField,
  dailyCap: field.int(10_000, { min: 0 }),
  /**
   * The labeler's clean-sender thresholds, for the account page's figures behind the label:
   * keep equal to `labeler.cleanSender` (same fields and defaults).
   */
  cleanSender: cleanSenderSection,
  /**
   * The URL members' browsers reach the admin at (scheme, host, port; no path). It names the
   * OAuth client and its redirect, and decides the cookie's Secure flag. Empty: the web
   * endpoint's own address (loopback development and tests). On a loopback http URL the
   * admin is atproto's loopback client; anywhere else a confidential client with its keys.
   */
  publicUrl: z
    .string()
    .default('')
    .refine((v) => v === '' || (URL.canParse(v) && /^https?:$/.test(new URL(v).protocol)), 'expected an http(s) URL'),
  /**
   * Key-encryption keys (the `@atmos/secrets` keyring file) sealing the OAuth states and
   * sessions at rest: they hold DPoP private keys and tokens.
   */
  kekFile: field.string('.state/admin/kek'),
  /** DIDs allowed into /operator and /api/operator with an atproto sign-in. */
  operators: field.list([]),
  session: section({
    /** How long a sign-in lasts; the member signs in again after it. */
    ttl: field.duration('12h'),
  }),
  oauth: section({
    /**
     * The confidential client's private signing keys (ES256 JWKs, `admin oauth init` creates
     * the file mode 0600, `admin oauth rotate` adds a newer one): the newest signs, all are
     * published at /oauth/jwks.json. Not read for the loopback client.
     */
    keysFile: field.string('.state/admin/oauth-keys.json'),
    /** Where DIDs are resolved; a local PLC in tests. */
    plcUrl: field.url('https://plc.directory', ['http', 'https']),
    /** An XRPC service resolving handles (com.atproto.identity.resolveHandle); empty: DNS and HTTPS well-known. */
    handleResolver: z.string().default(''),
    /** Talk to authorization servers and PDSes over plain http (development and tests only). */
    allowHttp: field.bool(false),
  }),
  /** Our labeler's public label API, read for the account's labels and the wizard's last step. */
  labeler: section({
    /** Base URL of queryLabels (`/xrpc/com.atproto.label.queryLabels` is appended); empty: labels not shown. */
    url: z
      .string()
      .default('http://127.0.0.1:2583')
      .refine((v) => v === '' || (URL.canParse(v) && /^https?:$/.test(new URL(v).protocol)), 'expected an http(s) URL'),
    /** The labeler's DID (`src` of its labels); empty: labels from any source the endpoint serves. */
    did: z.string().default(''),
  }),
  /** Members' webhook endpoints on the account page (`ATMOS_ADMIN_WEBHOOKS_*`). */
  webhooks: section({
    /** The key file sealing endpoint secrets: the webhooks service's `webhooks.kekFile`, the same file. */
    kekFile: field.string('.state/webhooks/kek'),
    /** How long a rotated-out secret keeps signing beside the new one. */
    rotationGrace: field.duration('24h'),
    /** Accept http:// endpoint URLs (the local network and tests only; keep equal to `webhooks.allowHttp`). */
    allowHttp: field.bool(false),
    /** Accept loopback and private hosts (the local network and tests only; keep equal to `webhooks.allowPrivate`). */
    allowPrivate: field.bool(false),
  }),
  /** Sign-in starts one client address may make per minute (each replica counts its own). */
  signinPerMinute: field.int(10, { min: 1 }),
})

export const adminConfigSchema = serviceConfigSchema('admin', { httpPort: 8105, own: adminSection })

export type AdminConfig = z.output<typeof adminConfigSchema>
