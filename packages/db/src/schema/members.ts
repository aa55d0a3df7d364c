import { sql } from 'drizzle-orm'
import { check, index, integer, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core'
import { at, bytea, createdAt, id, oneOf, ref } from './columns.ts'

export const MEMBER_STATUSES = ['pending', 'active', 'suspended'] as const
export type MemberStatus = (typeof MEMBER_STATUSES)[number]

/** A PDS operator enrolled in the pool, keyed by DID; one mail domain each. */
export const members = pgTable(
  'members',
  {
    id: id(),
    did: text().notNull(),
    handle: text(),
    /** Lower-case mail domain the member sends as (subdomains allowed). */
    domain: text().notNull(),
    status: text({ enum: MEMBER_STATUSES }).notNull().default('pending'),
    statusReason: text(),
    enrolledAt: createdAt(),
    /** Start of warming: the first day the member was active. */
    activatedAt: at(),
    suspendedAt: at(),
    updatedAt: createdAt(),
  },
  (t) => [
    uniqueIndex('members_did_key').on(t.did),
    uniqueIndex('members_domain_key').on(t.domain),
    index('members_status_idx').on(t.status),
    check('members_status_check', sql.raw(`status IN (${oneOf(MEMBER_STATUSES)})`)),
    check('members_domain_lower_check', sql`domain = lower(domain)`),
  ],
)

/** Every status change with who made it and why: suspension must be explainable. */
export const memberStatusChanges = pgTable(
  'member_status_changes',
  {
    id: id(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    fromStatus: text({ enum: MEMBER_STATUSES }),
    toStatus: text({ enum: MEMBER_STATUSES }).notNull(),
    reason: text().notNull(),
    /** 'operator:<name>', 'fbl-ingest', 'admin:<did>' … */
    actor: text().notNull(),
    at: createdAt(),
    /**
     * When Redis took the member-status-changed event. The change commits first; an event
     * lost to a Redis outage is sent again by a reconciler until this is set (an outbox).
     */
    notifiedAt: at(),
  },
  (t) => [
    index('member_status_changes_member_idx').on(t.memberId, t.at),
    index('member_status_changes_unnotified_idx').on(t.at).where(sql`notified_at IS NULL`),
  ],
)

/** SMTP submission credentials; only a scrypt/argon2 hash is kept. */
export const smtpCredentials = pgTable(
  'smtp_credentials',
  {
    id: id(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    username: text().notNull(),
    /** PHC string, e.g. `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`. */
    passwordHash: text().notNull(),
    createdAt: createdAt(),
    lastUsedAt: at(),
    revokedAt: at(),
  },
  (t) => [
    uniqueIndex('smtp_credentials_username_key').on(t.username),
    index('smtp_credentials_member_idx').on(t.memberId),
  ],
)

export const DKIM_ALGORITHMS = ['rsa-sha256', 'ed25519-sha256'] as const
export const DKIM_KEY_STATUSES = ['pending', 'active', 'retired'] as const

/**
 * DKIM keypairs: a member's (member_id set, d= the member's domain) or the pool's
 * (member_id null, d= the pool domain). The private key is sealed with the key-encryption
 * key named by kek_id (AES-256-GCM) and never leaves the relay unsealed.
 */
export const dkimKeys = pgTable(
  'dkim_keys',
  {
    id: id(),
    memberId: ref().references(() => members.id, { onDelete: 'cascade' }),
    domain: text().notNull(),
    selector: text().notNull(),
    algorithm: text({ enum: DKIM_ALGORITHMS }).notNull().default('rsa-sha256'),
    bits: integer(),
    /** The `p=` value published in DNS (base64 SubjectPublicKeyInfo or raw ed25519 key). */
    publicKey: text().notNull(),
    privateKeySealed: bytea().notNull(),
    kekId: text().notNull(),
    status: text({ enum: DKIM_KEY_STATUSES }).notNull().default('pending'),
    createdAt: createdAt(),
    activatedAt: at(),
    retiredAt: at(),
  },
  (t) => [
    uniqueIndex('dkim_keys_domain_selector_key').on(t.domain, t.selector),
    index('dkim_keys_member_idx').on(t.memberId, t.status),
    check('dkim_keys_algorithm_check', sql.raw(`algorithm IN (${oneOf(DKIM_ALGORITHMS)})`)),
    check('dkim_keys_status_check', sql.raw(`status IN (${oneOf(DKIM_KEY_STATUSES)})`)),
  ],
)
