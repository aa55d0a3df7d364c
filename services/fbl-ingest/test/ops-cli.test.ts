import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { aggregateFeedback, domains, memberStatusChanges, members } from '@atmos/db'
import { suppress } from '@atmos/reputation'
import { eq } from 'drizzle-orm'
import { addDomain, addMember, type Harness, harness } from './helpers.ts'

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const run = promisify(execFile)

let h: Harness
before(async () => {
  h = await harness('fbl-ops')
})
after(async () => {
  await h?.close()
})

async function ops(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...h.env } })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

describe('fbl-ingest-ops', () => {
  it('records a Gmail aggregate complaint rate for a member, which counts in its reputation', async () => {
    const m = await addMember(h.db)
    const now = Date.now()
    const out = await ops(
      'aggregate',
      'add',
      m.did,
      '--provider',
      'gmail',
      '--from',
      new Date(now - 86_400_000).toISOString(),
      '--to',
      new Date(now).toISOString(),
      '--rate',
      '0.004',
    )
    assert.equal(out.code, 0, out.stderr)
    const line = JSON.parse(out.stdout)
    assert.equal(line.level, 'suspend')
    assert.equal(line.member, m.did)
    assert.deepEqual(
      line.domains.map((d: { domain: string; status: string }) => [d.domain, d.status]),
      [[m.domain, 'active']],
    )
    const [row] = await h.db.select().from(aggregateFeedback).where(eq(aggregateFeedback.memberId, m.id))
    assert.equal(row?.complaintRate, '0.004000')
    assert.match(row?.recordedBy ?? '', /^operator:/)
    const bad = await ops('aggregate', 'add', m.did, '--provider', 'gmail', '--from', 'x', '--to', 'y', '--rate', '1')
    assert.equal(bad.code, 64)
    assert.match(bad.stderr, /--from must be an ISO date/)
  })

  it('lists and removes suppressions of a member named by DID or by a domain it holds, each with the domain that led to it', async () => {
    const m = await addMember(h.db)
    const second = await addDomain(h.db, m, `second-${m.domain}`)
    await suppress(h.db, {
      memberId: m.id,
      address: 'gone@remote.example',
      reason: 'hard_bounce',
      detail: 'userunknown',
      domainId: second.domainId,
    })
    const lines = (out: { stdout: string }) =>
      out.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
    const list = await ops('suppressions', 'list', m.did)
    assert.equal(list.code, 0, list.stderr)
    assert.deepEqual(
      lines(list).map((e) => [e.member, e.domain, e.address, e.reason]),
      [[m.did, second.domain, 'gone@remote.example', 'hard_bounce']],
    )
    const byDomain = await ops('suppressions', 'list', m.domain.toUpperCase())
    assert.equal(byDomain.code, 0, byDomain.stderr)
    assert.deepEqual(lines(byDomain), lines(list), 'either of its domains names the member')
    // The older flag form still works, and says it is going away.
    const old = await ops('suppressions', 'list', '--domain', m.domain)
    assert.equal(old.code, 0, old.stderr)
    assert.deepEqual(lines(old), lines(list))
    assert.match(old.stderr, /deprecated: --domain .*give <did\|domain> as an argument/)
    const all = await ops('suppressions', 'list')
    assert.ok(lines(all).some((e) => e.member === m.did && e.address === 'gone@remote.example'))

    const removed = await ops('suppressions', 'remove', second.domain, 'Gone@remote.example')
    assert.equal(removed.code, 0, removed.stderr)
    const empty = await ops('suppressions', 'list', m.did)
    assert.equal(empty.code, 0, empty.stderr)
    assert.equal(empty.stdout, '', 'stdout stays JSON lines only')
    assert.equal(empty.stderr, `no suppressions for ${m.did}\n`)
    const again = await ops('suppressions', 'remove', '--did', m.did, '--address', 'gone@remote.example')
    assert.equal(again.code, 1, again.stderr)
    assert.match(again.stderr, /deprecated: --did/)
    assert.match(again.stderr, /deprecated: --address/)
  })

  it('refuses a member named twice, by nobody, or by a domain it no longer holds', async () => {
    const m = await addMember(h.db)
    const both = await ops('suppressions', 'list', '--did', m.did, '--domain', m.domain)
    assert.equal(both.code, 64)
    assert.match(both.stderr, /give <did\|domain> once, not --did and --domain/)
    const twice = await ops('suppressions', 'list', m.did, '--did', m.did)
    assert.equal(twice.code, 64)
    assert.match(twice.stderr, /as an argument or --did, not both/)
    const none = await ops('suppressions', 'remove', '--address', 'a@b.example')
    assert.equal(none.code, 64)
    assert.match(none.stderr, /a DID or a domain is required/)
    await h.db.update(domains).set({ removedAt: new Date() }).where(eq(domains.id, m.domainId))
    const gone = await ops('suppressions', 'list', m.domain)
    assert.equal(gone.code, 64)
    assert.match(gone.stderr, new RegExp(`no member holds ${m.domain.replace(/\./g, '\\.')}`))
  })

  it('reinstates a suspended member and enqueues memberStatusChanged so the labeler re-issues', async () => {
    const m = await addMember(h.db)
    await h.db.update(members).set({ status: 'suspended', statusReason: 'complaints' }).where(eq(members.id, m.id))
    const out = await ops('reinstate', m.did, '--reason', 'list cleaned')
    assert.equal(out.code, 0, out.stderr)
    const r = JSON.parse(out.stdout)
    assert.equal(r.changed, true)
    assert.deepEqual(
      r.domains.map((d: { domain: string; status: string }) => [d.domain, d.status]),
      [[m.domain, 'active']],
    )
    assert.equal(r.enqueued, true)
    const [row] = await h.db.select().from(members).where(eq(members.id, m.id))
    assert.equal(row?.status, 'active')
    const [change] = await h.db.select().from(memberStatusChanges).where(eq(memberStatusChanges.id, r.changeId))
    assert.equal(change?.reason, 'list cleaned')
    const job = JSON.parse(
      (await h.redis.hget(`${h.prefix}:member-status-changed:status-change-${r.changeId}`, 'data'))!,
    )
    assert.deepEqual(job, { did: m.did, status: 'active', reason: 'list cleaned', changeId: r.changeId })
    assert.equal((await ops('reinstate')).code, 64)
    assert.equal((await ops('bogus')).code, 64)
  })

  it('answers --help on every command with the usage, and an unknown option with exit 64', async () => {
    for (const args of [
      ['--help'],
      ['aggregate', 'add', '--help'],
      ['suppressions', 'list', '-h'],
      ['reinstate', '--help'],
    ]) {
      const out = await ops(...args)
      assert.equal(out.code, 0, `${args.join(' ')}: ${out.stderr}`)
      assert.match(out.stdout, new RegExp(`^usage:\\s+fbl-ingest ${args[0] === '--help' ? '' : args[0]}`))
    }
    assert.match(
      (await ops('--help')).stdout,
      /fbl-ingest classify FILE[\s\S]*fbl-ingest suppressions remove <did\|domain> <address>/,
    )
    const unknown = await ops('suppressions', 'list', '--member', 'x')
    assert.equal(unknown.code, 64)
    assert.match(unknown.stderr, /Unknown option '--member'[\s\S]*usage:/)
  })
})
