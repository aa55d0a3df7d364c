import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { attestations, verificationRuns } from '@atmos/db'
import { goodMailZone } from '@atmos/testkit'
import type { VerifyDeps } from '@atmos/verify'
import { eq } from 'drizzle-orm'
import { MemberFilter } from '../src/ingest/member-filter.ts'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  queryLabels,
  relayMember,
  startLabeler,
} from './helpers.ts'

const GONE = 'did:plc:gone77nxzyoun6zhxrhs64oiz'
const AWAY = 'did:plc:away77nxzyoun6zhxrhs64oiz'
const MOVED = 'did:plc:moved7nxzyoun6zhxrhs64oiz'

/**
 * Holds the verify worker's DNS question for one name until the test releases it, so a
 * verification can be caught in flight at a known point (no sleeps, no timing).
 */
class DnsHold {
  private held: { name: string; entered: () => void; released: Promise<void> } | undefined

  wrap = (deps: VerifyDeps): VerifyDeps => ({
    ...deps,
    dns: {
      ...deps.dns,
      resolveTxt: async (name) => {
        const held = this.held
        if (held && name === held.name) {
          held.entered()
          await held.released
        }
        return deps.dns.resolveTxt(name)
      },
    },
  })

  /** Holds the next lookup of `name`; `entered` resolves once a verification is waiting on it. */
  at(name: string): { entered: Promise<void>; release: () => void } {
    let entered!: () => void
    let release!: () => void
    const enteredP = new Promise<void>((resolve) => {
      entered = resolve
    })
    const released = new Promise<void>((resolve) => {
      release = resolve
    })
    this.held = { name, entered, released }
    return {
      entered: enteredP,
      release: () => {
        this.held = undefined
        release()
      },
    }
  }
}

describe('withdrawn labels stay withdrawn', () => {
  const hold = new DnsHold()
  let h: LabelerHarness

  before(async () => {
    h = await startLabeler(
      {
        ...goodMailZone('gone.example', GONE),
        ...goodMailZone('away.example', AWAY),
        ...goodMailZone('moved.example', MOVED),
      },
      {},
      { wrapVerifyDeps: hold.wrap },
    )
    await relayMember(h.service.ctx.db, AWAY, ['away.example'])
  })
  after(async () => {
    await h?.close()
  })

  const runCount = async (did: string) =>
    (await h.service.ctx.db.select().from(verificationRuns).where(eq(verificationRuns.did, did))).length

  async function attest(did: string, domain: string, labels: number) {
    h.jetstream.commit(did, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: domain,
      cid: `bafy${domain.split('.')[0]}`,
      record: attestationRecord(domain),
    })
    await eventually(async () => {
      const l = await queryLabels(h.xrpc, did)
      return l.length === labels && l.every((x) => !x.neg) ? true : undefined
    })
  }

  /** Waits for every label on `did` to be negated, and returns them. */
  const allNegated = (did: string, what: string) =>
    eventually(
      async () => {
        const l = await queryLabels(h.xrpc, did)
        return l.length && l.every((x) => x.neg) ? l : undefined
      },
      20_000,
      what,
    )

  /** Starts a re-verification of `did` and returns once it is held at a lookup (its _atproto one unless named). */
  async function verificationInFlight(did: string, domain: string, name = `_atproto.${domain}`) {
    const held = hold.at(name)
    h.jetstream.identity(did, `${domain.split('.')[0]}.test`)
    await held.entered
    return { release: held.release, runs: await runCount(did) }
  }

  it('a verification that finishes after the record was deleted issues nothing', async () => {
    await attest(GONE, 'gone.example', 1)
    const inFlight = await verificationInFlight(GONE, 'gone.example')
    h.jetstream.commit(GONE, { operation: 'delete', collection: ATTESTATION, rkey: 'gone.example' })
    await allNegated(GONE, 'the deletion to withdraw the labels')
    inFlight.release()
    // The passing run commits (it is history) but issues no label.
    await eventually(async () => ((await runCount(GONE)) > inFlight.runs ? true : undefined), 20_000, 'the run')
    const labels = await queryLabels(h.xrpc, GONE)
    assert.deepEqual(
      labels.map((l) => [l.val, l.neg]),
      [['verified-mail-operator', true]],
    )
  })

  it('a verification of a record replaced meanwhile leaves the labels to the new one', async () => {
    await attest(MOVED, 'moved.example', 1)
    // Held at the selector the old version names, which the new one does not look up.
    const inFlight = await verificationInFlight(MOVED, 'moved.example', 'atmos1._domainkey.moved.example')
    // The new version names a selector nobody published: its own verification fails and withdraws.
    h.jetstream.commit(MOVED, {
      operation: 'update',
      collection: ATTESTATION,
      rkey: 'moved.example',
      cid: 'bafymoved2',
      record: attestationRecord('moved.example', ['unpublished']),
    })
    await allNegated(MOVED, 'the new version to fail')
    inFlight.release()
    await eventually(async () => ((await runCount(MOVED)) > inFlight.runs + 1 ? true : undefined), 20_000, 'the run')
    assert.deepEqual(
      (await queryLabels(h.xrpc, MOVED)).map((l) => [l.val, l.neg]),
      [['verified-mail-operator', true]],
    )
  })

  it('a deactivated account stays withdrawn through a verification in flight and the next sweep, until it is back', async () => {
    await attest(AWAY, 'away.example', 2)
    const inFlight = await verificationInFlight(AWAY, 'away.example')
    h.jetstream.account(AWAY, false, 'deactivated')
    await allNegated(AWAY, 'the deactivation to withdraw the labels')
    inFlight.release()
    await eventually(async () => ((await runCount(AWAY)) > inFlight.runs ? true : undefined), 20_000, 'the run')
    assert.ok((await queryLabels(h.xrpc, AWAY)).every((l) => l.neg))

    // What was recorded: the attestation is held back for its account.
    const db = h.service.ctx.db
    const [att] = await db.select().from(attestations).where(eq(attestations.did, AWAY))
    assert.equal(att?.state, 'rejected')
    assert.equal(att?.rejectionReason, 'account inactive (deactivated)')

    // The scheduler's next sweep asks again: nothing is issued.
    const swept = await h.service.ctx.verifyWorker.process({
      did: AWAY,
      rkey: 'away.example',
      trigger: 'schedule',
      requestedAt: new Date().toISOString(),
    })
    assert.equal(swept.outcome, 'skipped')
    assert.ok((await queryLabels(h.xrpc, AWAY)).every((l) => l.neg))

    // A restarted labeler still listens for the account's return.
    const filter = new MemberFilter()
    await filter.load(db)
    assert.ok(filter.has(AWAY))
    assert.ok(!filter.has(GONE))

    // Back: verified afresh, labelled again.
    h.jetstream.account(AWAY, true)
    const back = await eventually(async () => {
      const l = await queryLabels(h.xrpc, AWAY)
      return l.length === 2 && l.every((x) => !x.neg) ? l : undefined
    })
    assert.deepEqual(back.map((l) => l.val).sort(), ['relay-member', 'verified-mail-operator'])
    const [live] = await db.select().from(attestations).where(eq(attestations.did, AWAY))
    assert.equal(live?.state, 'valid')
    assert.equal(live?.rejectionReason, null)
  })
})
