import { sql } from 'drizzle-orm'
import { check, index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core'
import { at, bytea, createdAt, id, oneOf, ref } from './columns.ts'

export const MEMBER_STATUSES = ['pending', 'active', 'suspended'] as const
export type MemberStatus = (typeof MEMBER_STATUSES)[number]

/**
 * A PDS operator enrolled in the pool: an account, keyed by DID. What it sends as are its
 * domains (one or more, `pool.maxDomainsPerMember`); the member's status is over all of them.
 */
export const members = pgTable(
  'members',
  {
    id: id(),
    did: text().notNull(),
    handle: text(),
    status: text({ enum: MEMBER_STATUSES }).notNull().default('pending'),
    statusReason: text(),
    enrolledAt: createdAt(),
    /** The first day the member was active (each domain warms from its own activated_at). */
    activatedAt: at(),
    suspendedAt: at(),
    updatedAt: createdAt(),
  },
  (t) => [
    uniqueIndex('members_did_key').on(t.did),
    index('members_status_idx').on(t.status),
    check('members_status_check', sql.raw(`status IN (${oneOf(MEMBER_STATUSES)})`)),
  ],
)

/**
 * A sending domain a member holds in the relay: the unit of sending. Each has its own DKIM
 * keys, warming (from activated_at) and daily cap, status, credentials scope and forward-to
 * address. A domain is held by at most one member at a time; one that is given up or moves
 * to another account keeps its row (removed_at set) so that old messages still attribute.
 */
export const domains = pgTable(
  'domains',
  {
    id: id(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    /** Lower-case mail domain (its subdomains send under it). */
    domain: text().notNull(),
    status: text({ enum: MEMBER_STATUSES }).notNull().default('active'),
    statusReason: text(),
    /** Start of this domain's warming: the first day it was active. */
    activatedAt: at(),
    suspendedAt: at(),
    /** Where replies and notices for the domain are forwarded (used by inbound forwarding). */
    forwardTo: text(),
    createdAt: createdAt(),
    updatedAt: createdAt(),
    /** When the member gave the domain up or it moved to another account; the row stays. */
    removedAt: at(),
    removedReason: text(),
  },
  (t) => [
    uniqueIndex('domains_domain_held_key').on(t.domain).where(sql`removed_at IS NULL`),
    index('domains_member_idx').on(t.memberId),
    check('domains_status_check', sql.raw(`status IN (${oneOf(MEMBER_STATUSES)})`)),
    check('domains_domain_lower_check', sql`domain = lower(domain)`),
  ],
)

/**
 * Who changed what, when and why: every mutation of members, domains, credentials and
 * suppressions by an operator, a member or a service (the operator console reads it).
 */
export const auditLog = pgTable(
  'audit_log',
  {
    id: id(),
    at: createdAt(),
    /** 'operator:<name>', 'labeler', 'fbl-ingest', 'admin:<did>' … */
    actor: text().notNull(),
    /** Dotted, e.g. `domain.added`, `domain.moved`, `domain.removed`, `credential.rotated`. */
    action: text().notNull(),
    did: text(),
    domain: text(),
    memberId: ref().references(() => members.id, { onDelete: 'set null' }),
    detail: jsonb(),
  },
  (t) => [
    index('audit_log_at_idx').on(t.at),
    index('audit_log_did_idx').on(t.did, t.at),
    index('audit_log_domain_idx').on(t.domain, t.at),
    index('audit_log_action_idx').on(t.action, t.at),
    // The console's audit log filtered by who did it.
    index('audit_log_actor_idx').on(t.actor, t.at),
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
    /** Set when the change was to one domain of the member, not to the member. */
    domainId: ref().references(() => domains.id, { onDelete: 'cascade' }),
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
    /**
     * When the labeler applied the event. Redis keeps nothing on disk: an event it took
     * (notified) can still be lost with it before the labeler ran, so the reconciler sends
     * again every change not applied, not only those never notified.
     */
    appliedAt: at(),
  },
  (t) => [
    index('member_status_changes_member_idx').on(t.memberId, t.at),
    index('member_status_changes_unnotified_idx').on(t.at).where(sql`notified_at IS NULL`),
    index('member_status_changes_unapplied_idx').on(t.at).where(sql`applied_at IS NULL`),
  ],
)

/**
 * SMTP submission credentials; only a scrypt hash is kept. A credential with domain_id may
 * send only as that domain; without, as any domain the member holds.
 */
export const smtpCredentials = pgTable(
  'smtp_credentials',
  {
    id: id(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    domainId: ref().references(() => domains.id, { onDelete: 'cascade' }),
    username: text().notNull(),
    /** PHC string, e.g. `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`. */
    passwordHash: text().notNull(),
    createdAt: createdAt(),
    lastUsedAt: at(),
    revokedAt: at(),
  },
  (t) => [
    // Unique among live credentials: a domain re-added after a move reuses its name.
    uniqueIndex('smtp_credentials_username_key').on(t.username).where(sql`revoked_at IS NULL`),
    index('smtp_credentials_member_idx').on(t.memberId),
  ],
)

/**
 * API keys for the HTTP send API (`Authorization: Bearer atmos_<key_id>_<secret>`), each
 * scoped to one domain of the member, at most one live key a domain. `key_id` is public (it
 * finds the row); only a keyed hash of the secret is kept (@atmos/enrolment api-keys.ts).
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: id(),
    memberId: ref()
      .notNull()
      .references(() => members.id, { onDelete: 'cascade' }),
    domainId: ref()
      .notNull()
      .references(() => domains.id, { onDelete: 'cascade' }),
    /** The public part of the key: 16 lower-case hex digits. */
    keyId: text().notNull(),
    /** HMAC-SHA256 of the secret, keyed by the key id (see api-keys.ts for why not scrypt). */
    secretHash: bytea().notNull(),
    createdAt: createdAt(),
    lastUsedAt: at(),
    revokedAt: at(),
  },
  (t) => [
    uniqueIndex('api_keys_key_id_key').on(t.keyId),
    uniqueIndex('api_keys_one_live_key').on(t.domainId).where(sql`revoked_at IS NULL`),
    index('api_keys_member_idx').on(t.memberId),
  ],
)

export const DKIM_ALGORITHMS = ['rsa-sha256', 'ed25519-sha256'] as const
export const DKIM_KEY_STATUSES = ['pending', 'active', 'retired'] as const

/**
 * DKIM keypairs: a member's domain's (domain_id set, d= that domain; an RSA and an
 * Ed25519 key, selectors `<s>r` and `<s>e`) or the pool's (member_id null, d= the pool domain). The private key is sealed with the key-encryption
 * key named by kek_id (AES-256-GCM) and never leaves the relay unsealed.
 */
export const dkimKeys = pgTable(
  'dkim_keys',
  {
    id: id(),
    memberId: ref().references(() => members.id, { onDelete: 'cascade' }),
    domainId: ref().references(() => domains.id, { onDelete: 'cascade' }),
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
    index('dkim_keys_domain_idx').on(t.domainId, t.status),
    // A rotation issues one pending key of each algorithm; a second concurrent rotation of the
    // same domain loses on this index.
    uniqueIndex('dkim_keys_one_pending_key')
      .on(t.domainId, t.algorithm)
      .where(sql`status = 'pending' AND domain_id IS NOT NULL`),
    check('dkim_keys_algorithm_check', sql.raw(`algorithm IN (${oneOf(DKIM_ALGORITHMS)})`)),
    check('dkim_keys_status_check', sql.raw(`status IN (${oneOf(DKIM_KEY_STATUSES)})`)),
  ],
)
