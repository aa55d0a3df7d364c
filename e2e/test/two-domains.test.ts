import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { verificationRuns, verificationStatus } from '@atmos/db'
import type { LabelerService } from '@atmos/labeler'
import { eventually, labelerEnv, queryLabels } from '@atmos/labeler/test-harness'
import { TypedQueue, verifyAttestation } from '@atmos/queues'
import { type AddedDomain, addDomain } from '@atmos/relay/domains'
import { addMember } from '@atmos/relay/members'
import {
  type Harness,
  POOL_DOMAIN,
  poolPublicKey,
  refusal,
  rfc822,
  startSubmission,
  submitRaw,
} from '@atmos/relay/test-harness'
import { goodMailZone, TestDnsServer } from '@atmos/testkit'
import { AtpAgent } from '@atproto/api'
import { TestNetworkNoAppView } from '@atproto/dev-env'
import { and, desc, eq } from 'drizzle-orm'
import { startFirehoseLabeler } from './firehose-labeler.ts'
import { receiverVerdicts } from './receiver.ts'

// Issue 14's path across services: one account holds two sending domains. Both attestations
// are written to a real PDS under their own record keys and read from its firehose by the
// labeler, verified against loopback DNS holding the keys the relay issued; each domain's mail
// leaves the relay with three signatures that a receiver verifies on its own. Then the
// domains' DNS degrades, one at a time.

const ATTESTATION = 'email.atmos.attestation'
const ALPHA = 'alpha-mail.example'
const BETA = 'beta-mail.example'

describe('a member with two domains, from the PDS to signed mail', () => {
  let network: TestNetworkNoAppView
  let agent: AtpAgent
  let did: string
  let dns: TestDnsServer
  let relay: Harness
  let labeler: LabelerService
  let domains: Record<string, AddedDomain>

  before(async () => {
    process.env.TMPDIR = mkdtempSync(join(tmpdir(), 'atmos-e2e-pds-'))
    network = await TestNetworkNoAppView.create({})
    agent = new AtpAgent({ service: network.pds.url })
    await agent.createAccount({ email: 'op@mail.test', handle: 'mailop.test', password: 'correct horse battery' })
    did = agent.session!.did

    dns = new TestDnsServer()
    await dns.start()
    const setup = await labelerEnv({
      databaseUrl: 'postgres://unused',
      jetstreamUrl: 'ws://127.0.0.1:9/unused',
      dnsPort: dns.port,
      plcUrl: network.plc.url,
    })
    // The relay trusts only this labeler's labels, as in production.
    relay = await startSubmission({ ATMOS_RELAY_SUBMISSION_LABELER_DID: setup.didKey })

    // Enrolment as the operator's commands do it: the member with its first domain, then a second.
    const first = await addMember(relay.sql, relay.keyring, {
      did,
      domain: ALPHA,
      maxDomains: 2,
      actor: 'operator:e2e',
    })
    const second = await addDomain(relay.sql, relay.keyring, {
      did,
      domain: BETA,
      maxDomains: 2,
      actor: 'operator:e2e',
    })
    domains = { [ALPHA]: first, [BETA]: second }
    // Each domain's zone: what goodMailZone publishes, with the relay's two keys instead of its one.
    for (const added of [first, second]) {
      const { [`atmos1._domainkey.${added.domain}`]: _, ...zone } = goodMailZone(added.domain, did)
      for (const [name, records] of Object.entries(zone)) dns.set(name, records)
      for (const key of added.keys) dns.set(key.txtName, { TXT: [key.txt] })
    }
    dns.set(`pool1._domainkey.${POOL_DOMAIN}`, { TXT: [`v=DKIM1; k=rsa; p=${await poolPublicKey(relay.sql)}`] })

    labeler = await startFirehoseLabeler({ env: setup.env, databaseUrl: relay.db.url, pdsUrl: network.pds.url })
  })

  after(async () => {
    await labeler?.destroy()
    await relay?.close()
    await dns?.close()
    await network?.close()
  })

  const labelsOf = async () =>
    (await queryLabels(labeler.xrpcUrl!, did)).map((l) => [l.val, l.neg === true] as const).sort()

  const holds = async () =>
    (await labeler.ctx.db.select().from(verificationStatus).where(eq(verificationStatus.did, did)))
      .map((r) => [r.domain, r.holds] as const)
      .sort()

  /** Asks the labeler to check one attestation again, as the scheduler does, and waits for the run. */
  async function reverify(domain: string) {
    const db = labeler.ctx.db
    const latest = async () =>
      (
        await db
          .select()
          .from(verificationRuns)
          .where(and(eq(verificationRuns.did, did), eq(verificationRuns.domain, domain)))
          .orderBy(desc(verificationRuns.id))
          .limit(1)
      )[0]
    const before = (await latest())?.id ?? 0
    const queue = new TypedQueue(verifyAttestation, labeler.ctx.redis, labeler.ctx.config.redis.prefix)
    await queue.enqueue({ did, rkey: domain, trigger: 'schedule', requestedAt: new Date().toISOString() })
    return eventually(async () => {
      const run = await latest()
      return run && run.id > before && run.finishedAt ? run : undefined
    }, 30_000)
  }

  /** Submits one message from `domain` with its own credential; returns the spooled bytes. */
  async function send(domain: string): Promise<Buffer> {
    const added = domains[domain]!
    const from = `notify@${domain}`
    const marker = `e2e-${domain}-${Date.now()}`
    await submitRaw(
      relay.port,
      added,
      { from, to: ['someone@receiver.example'] },
      rfc822({ From: from, To: 'someone@receiver.example', Subject: marker }, `Your code is 123456\r\n`),
    )
    const [row] = await relay.sql<{ body: Buffer }[]>`
      select body from messages where envelope_from = ${from} order by received_at desc limit 1`
    assert.ok(row, `a message from ${domain} was spooled`)
    return row.body
  }

  it('reads both attestations from the firehose and labels the DID once both verify', async () => {
    for (const added of Object.values(domains)) {
      // Exactly the record `relay domains add` prints, under the domain as its record key.
      await agent.com.atproto.repo.putRecord({
        repo: did,
        collection: ATTESTATION,
        rkey: added.domain,
        record: { ...added.attestation },
      })
    }
    await eventually(
      async () => ((await holds()).filter(([, held]) => held).length === 2 ? true : undefined),
      60_000,
      'both domains verified from the firehose',
    )
    assert.deepEqual(await holds(), [
      [ALPHA, true],
      [BETA, true],
    ])
    await eventually(async () => ((await labelsOf()).length === 2 ? true : undefined), 30_000, 'labels')
    assert.deepEqual(await labelsOf(), [
      ['relay-member', false],
      ['verified-mail-operator', false],
    ])
  })

  it('signs each domain with its RSA and Ed25519 keys and the pool key, each verifying on its own', async () => {
    for (const domain of [ALPHA, BETA]) {
      const body = await send(domain)
      const { signatures, dmarc } = await receiverVerdicts(body, {
        ip: '198.51.100.7',
        helo: 'relay.pool.example',
        sender: `b+x@bounces.${POOL_DOMAIN}`,
        dnsAddress: `127.0.0.1:${dns.port}`,
      })
      assert.deepEqual(signatures, [
        [domain, 'ed25519-sha256', 'atmos1e', 'pass'],
        [domain, 'rsa-sha256', 'atmos1r', 'pass'],
        [POOL_DOMAIN, 'rsa-sha256', 'pool1', 'pass'],
      ])
      assert.equal(dmarc, 'pass', `DMARC aligned for ${domain}`)
    }
  })

  it("one domain's DNS degrades: it is refused at MAIL FROM, the other sends, the DID keeps its labels", async () => {
    // beta's Ed25519 key is revoked (an empty p=): a permanent failure of that domain alone.
    dns.set(`atmos1e._domainkey.${BETA}`, { TXT: ['v=DKIM1; k=ed25519; p='] })
    assert.equal((await reverify(BETA)).outcome, 'fail')
    assert.deepEqual(await holds(), [
      [ALPHA, true],
      [BETA, false],
    ])
    const refused = await refusal(send(BETA))
    assert.equal(refused.responseCode, 550)
    assert.match(refused.response ?? '', /5\.7\.1 .*beta-mail\.example's attestation does not verify now/)
    assert.equal(refused.command, 'MAIL FROM')
    await send(ALPHA)
    assert.deepEqual(await labelsOf(), [
      ['relay-member', false],
      ['verified-mail-operator', false],
    ])
  })

  it('both degrade: both labels are negated and neither domain may send', async () => {
    dns.set(`_dmarc.${ALPHA}`, { TXT: ['v=DMARC1; p=none'] })
    assert.equal((await reverify(ALPHA)).outcome, 'fail')
    assert.deepEqual(await holds(), [
      [ALPHA, false],
      [BETA, false],
    ])
    await eventually(
      async () => ((await labelsOf()).every(([, neg]) => neg) ? true : undefined),
      30_000,
      'both labels negated',
    )
    assert.deepEqual(await labelsOf(), [
      ['relay-member', true],
      ['verified-mail-operator', true],
    ])
    for (const domain of [ALPHA, BETA]) {
      const refused = await refusal(send(domain))
      assert.equal(refused.responseCode, 550, domain)
    }
  })
})
