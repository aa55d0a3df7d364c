import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  attestations,
  auditLog,
  dkimKeys,
  domains,
  members,
  smtpCredentials,
  verificationChecks,
  verificationRuns,
  verificationStatus,
} from '@atmos/db'
import { memberStatusChanged, TypedQueue, verifyAttestation } from '@atmos/queues'
import { goodMailZone } from '@atmos/testkit'
import { and, asc, eq } from 'drizzle-orm'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  queryLabels,
  relayMember,
  startLabeler,
} from './helpers.ts'

const MISKEYED = 'did:plc:miskeyednxzyoun6zhxrhs64'
const LEGACY = 'did:plc:legacy7nxzyoun6zhxrhs64o'
const HOLDER = 'did:plc:holder7nxzyoun6zhxrhs64o'
const CLAIMANT = 'did:plc:claimantxzyoun6zhxrhs64'
const SHARED = 'shared.example'
const MEMBER = 'did:plc:member7nxzyoun6zhxrhs64o'
const MEMBER_DOMAINS = ['one.member.example', 'two.member.example'] as const

describe('labeler: a domain is the unit an attestation covers', () => {
  let h: LabelerHarness

  before(async () => {
    h = await startLabeler({
      ...goodMailZone('miskeyed.example', MISKEYED),
      ...goodMailZone('legacy.example', LEGACY),
      ...goodMailZone(SHARED, HOLDER),
      ...goodMailZone(MEMBER_DOMAINS[0], MEMBER),
      ...goodMailZone(MEMBER_DOMAINS[1], MEMBER),
    })
  })
  after(async () => {
    await h?.close()
  })

  const db = () => h.service.ctx.db
  const runs = (did: string) =>
    db().select().from(verificationRuns).where(eq(verificationRuns.did, did)).orderBy(asc(verificationRuns.id))
  const status = (did: string, domain: string) =>
    db()
      .select()
      .from(verificationStatus)
      .where(and(eq(verificationStatus.did, did), eq(verificationStatus.domain, domain)))
      .then((r) => r[0])
  const unchanged = async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${h.service.ctx.ops.address!.port}/metrics`)).text()
    return Number(
      /atmos_labeler_ingest_events_total\{kind="record",outcome="unchanged",service="labeler"\} (\d+)/.exec(
        metrics,
      )?.[1] ?? 0,
    )
  }
  const labelsOf = async (did: string) =>
    (await queryLabels(h.xrpc, did)).map((l) => [l.val, l.neg === true] as const).sort()

  it('a record whose key is not its domain is rejected with that reason, and labels nothing', async () => {
    h.jetstream.commit(MISKEYED, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'other.example',
      cid: 'bafymiskeyed',
      record: attestationRecord('miskeyed.example'),
    })
    const row = await eventually(async () => {
      const [r] = await db().select().from(attestations).where(eq(attestations.did, MISKEYED))
      return r
    })
    assert.equal(row.state, 'rejected')
    assert.equal(row.rejectionReason, 'record key "other.example" must be the attested domain "miskeyed.example"')
    // The same record under its domain is accepted and verified: only the key was wrong.
    h.jetstream.commit(MISKEYED, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'miskeyed.example',
      cid: 'bafymiskeyed2',
      record: attestationRecord('miskeyed.example'),
    })
    await eventually(async () => ((await runs(MISKEYED)).length ? true : undefined))
    assert.deepEqual(
      (await runs(MISKEYED)).map((r) => r.domain),
      ['miskeyed.example'],
      'the mis-keyed record was never verified',
    )
  })

  it('a legacy row under "self" keeps verifying; a new write under "self" is rejected and withdraws it', async () => {
    // Stored before the published lexicon, when every attestation was keyed `self`.
    await db()
      .insert(attestations)
      .values({ did: LEGACY, rkey: 'self', cid: 'bafylegacy', domain: 'legacy.example', dkimSelectors: ['atmos1'] })
    const first = await h.service.ctx.verifyWorker.process({
      did: LEGACY,
      rkey: 'self',
      trigger: 'schedule',
      requestedAt: new Date().toISOString(),
    })
    assert.equal(first.outcome, 'pass')
    assert.deepEqual(await labelsOf(LEGACY), [['verified-mail-operator', false]])
    assert.equal((await status(LEGACY, 'legacy.example'))?.holds, true)
    // A replay of the version we hold (a rewind) changes nothing.
    h.jetstream.commit(LEGACY, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: 'self',
      cid: 'bafylegacy',
      record: attestationRecord('legacy.example'),
    })
    await eventually(async () => ((await unchanged()) > 0 ? true : undefined), 20_000, 'the replay')
    assert.equal((await db().select().from(attestations).where(eq(attestations.did, LEGACY)))[0]?.state, 'valid')
    // A new version under `self`: refused like any key that is not its domain.
    h.jetstream.commit(LEGACY, {
      operation: 'update',
      collection: ATTESTATION,
      rkey: 'self',
      cid: 'bafylegacy2',
      record: attestationRecord('legacy.example'),
    })
    const rejected = await eventually(async () => {
      const [r] = await db().select().from(attestations).where(eq(attestations.did, LEGACY))
      return r?.state === 'rejected' ? r : undefined
    })
    assert.equal(rejected.rejectionReason, 'record key "self" must be the attested domain "legacy.example"')
    assert.equal(rejected.cid, 'bafylegacy2')
    // The negation commits with the rejection; the API's page cache hears of it by NOTIFY,
    // an instant later (a busy machine stretches that instant).
    await eventually(
      async () => (JSON.stringify(await labelsOf(LEGACY)) === '[["verified-mail-operator",true]]' ? true : undefined),
      20_000,
      'the negation served by queryLabels',
    )
    assert.equal((await status(LEGACY, 'legacy.example'))?.holds, false)
  })

  it('a second DID claiming a held domain is refused without DNS; the domain moves once the holder lets go', async () => {
    // The holder is a relay member sending as the domain, with a credential scoped to it.
    const { memberId, domainIds } = await relayMember(db(), HOLDER, [SHARED])
    const [credential] = await db()
      .insert(smtpCredentials)
      .values({ memberId, domainId: domainIds[0]!, username: SHARED, passwordHash: '$scrypt$test' })
      .returning()
    const [key] = await db()
      .insert(dkimKeys)
      .values({
        memberId,
        domainId: domainIds[0]!,
        domain: SHARED,
        selector: 'atmos1r',
        publicKey: 'test',
        privateKeySealed: Buffer.alloc(16),
        kekId: 'test',
        status: 'active',
      })
      .returning()
    h.jetstream.commit(HOLDER, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: SHARED,
      cid: 'bafyholder',
      record: attestationRecord(SHARED),
    })
    await eventually(async () => ((await labelsOf(HOLDER)).length === 2 ? true : undefined))
    assert.deepEqual(await labelsOf(HOLDER), [
      ['relay-member', false],
      ['verified-mail-operator', false],
    ])

    // The domain's owner points it at another account, which attests it too.
    h.dns.set(`_atproto.${SHARED}`, { TXT: [`did=${CLAIMANT}`] })
    const asked = h.dns.queries.length
    h.jetstream.commit(CLAIMANT, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: SHARED,
      cid: 'bafyclaimant',
      record: attestationRecord(SHARED),
    })
    const [refused] = await eventually(async () => {
      const r = await runs(CLAIMANT)
      return r.length ? r : undefined
    })
    assert.equal(refused!.outcome, 'fail')
    const checks = await db().select().from(verificationChecks).where(eq(verificationChecks.runId, refused!.id))
    assert.deepEqual(
      checks.map((c) => [c.check, c.outcome]),
      [['domain_control', 'fail']],
    )
    assert.match(
      checks[0]!.reason,
      new RegExp(`^shared\\.example is held by ${HOLDER}; a domain belongs to one account at a time`),
    )
    assert.equal(
      h.dns.queries.slice(asked).filter((q) => q.name.endsWith(SHARED)).length,
      0,
      'a refused claim asks DNS nothing',
    )
    assert.deepEqual(await queryLabels(h.xrpc, CLAIMANT), [])
    assert.equal((await status(CLAIMANT, SHARED))?.holds, false)
    assert.equal((await status(HOLDER, SHARED))?.holds, true)

    // The holder deletes its attestation: its labels go, and the claimant is verified again.
    h.jetstream.commit(HOLDER, { operation: 'delete', collection: ATTESTATION, rkey: SHARED })
    const released = await eventually(
      async () => (await runs(CLAIMANT)).find((r) => r.trigger === 'release'),
      20_000,
      'the release run',
    )
    assert.equal(released.outcome, 'pass')
    await eventually(async () => ((await labelsOf(CLAIMANT)).length ? true : undefined))
    assert.deepEqual(await labelsOf(CLAIMANT), [['verified-mail-operator', false]])
    assert.deepEqual(await labelsOf(HOLDER), [
      ['relay-member', true],
      ['verified-mail-operator', true],
    ])
    assert.equal((await status(CLAIMANT, SHARED))?.holds, true)
    assert.equal((await status(HOLDER, SHARED))?.holds, false)

    // The holder's relay domain moved with it: removed, its credential revoked, audited.
    const [row] = await db().select().from(domains).where(eq(domains.id, domainIds[0]!))
    assert.ok(row?.removedAt, 'the domains row is removed')
    assert.equal(row?.removedReason, `moved to ${CLAIMANT}`)
    const [cred] = await db().select().from(smtpCredentials).where(eq(smtpCredentials.id, credential!.id))
    assert.ok(cred?.revokedAt, 'its credential is revoked')
    const [oldKey] = await db().select().from(dkimKeys).where(eq(dkimKeys.id, key!.id))
    assert.equal(oldKey?.status, 'retired', 'its DKIM key signs no more')
    const audit = await db().select().from(auditLog).where(eq(auditLog.action, 'domain.moved'))
    assert.equal(audit.length, 1)
    assert.equal(audit[0]!.domain, SHARED)
    assert.equal(audit[0]!.memberId, memberId)
    assert.deepEqual(
      { from: (audit[0]!.detail as { from: string }).from, to: (audit[0]!.detail as { to: string }).to },
      { from: HOLDER, to: CLAIMANT },
    )
  })
  it('a verify job naming no record key verifies every live attestation of the DID', async () => {
    const queue = new TypedQueue(verifyAttestation, h.service.ctx.redis, h.service.ctx.config.redis.prefix)
    try {
      await queue.enqueue({ did: MISKEYED, trigger: 'admin', requestedAt: new Date().toISOString() })
      const run = await eventually(async () => (await runs(MISKEYED)).find((r) => r.trigger === 'admin'))
      assert.equal(run.domain, 'miskeyed.example')
      assert.equal(run.outcome, 'pass')
    } finally {
      await queue.close()
    }
  })
  it('relay-member follows the member and its domains: it stands while one active relay domain holds', async () => {
    const { memberId, domainIds } = await relayMember(db(), MEMBER, [...MEMBER_DOMAINS])
    for (const domain of MEMBER_DOMAINS) {
      h.jetstream.commit(MEMBER, {
        operation: 'create',
        collection: ATTESTATION,
        rkey: domain,
        cid: `bafy${domain.split('.')[0]}`,
        record: attestationRecord(domain),
      })
    }
    await eventually(async () => ((await labelsOf(MEMBER)).length === 2 ? true : undefined))
    const queue = new TypedQueue(memberStatusChanged, h.service.ctx.redis, h.service.ctx.config.redis.prefix)
    let changeId = 0
    // What the relay and fbl-ingest do: change the rows, then tell the labeler.
    const changed = async (
      status: 'active' | 'suspended',
      reason: string,
      expect: Array<readonly [string, boolean]>,
    ) => {
      await queue.enqueue({ did: MEMBER, status, reason, changeId: ++changeId })
      await eventually(
        async () => (JSON.stringify(await labelsOf(MEMBER)) === JSON.stringify(expect) ? true : undefined),
        20_000,
        `labels after: ${reason}`,
      )
    }
    try {
      await db().update(domains).set({ status: 'suspended' }).where(eq(domains.id, domainIds[0]!))
      await db().update(domains).set({ status: 'suspended' }).where(eq(domains.id, domainIds[1]!))
      await changed('active', 'both domains suspended', [
        ['relay-member', true],
        ['verified-mail-operator', false],
      ])
      await db().update(domains).set({ status: 'active' }).where(eq(domains.id, domainIds[1]!))
      // One of its two relay domains active and held is enough.
      await changed('active', 'one domain reinstated', [
        ['relay-member', false],
        ['verified-mail-operator', false],
      ])
      await db().update(members).set({ status: 'suspended' }).where(eq(members.id, memberId))
      await changed('suspended', 'member suspended', [
        ['relay-member', true],
        ['verified-mail-operator', false],
      ])
    } finally {
      await queue.close()
    }
  })
})
