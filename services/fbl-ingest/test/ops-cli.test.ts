import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { aggregateFeedback, memberStatusChanges, members } from '@atmos/db'
import { suppress } from '@atmos/reputation'
import { eq } from 'drizzle-orm'
import { addMember, type Harness, harness } from './helpers.ts'

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
      '--did',
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
    const [row] = await h.db.select().from(aggregateFeedback).where(eq(aggregateFeedback.memberId, m.id))
    assert.equal(row?.complaintRate, '0.004000')
    assert.match(row?.recordedBy ?? '', /^operator:/)
    const bad = await ops(
      'aggregate',
      'add',
      '--did',
      m.did,
      '--provider',
      'gmail',
      '--from',
      'x',
      '--to',
      'y',
      '--rate',
      '1',
    )
    assert.equal(bad.code, 64)
    assert.match(bad.stderr, /--from must be an ISO date/)
  })

  it('lists and removes suppressions', async () => {
    const m = await addMember(h.db)
    await suppress(h.db, {
      memberId: m.id,
      address: 'gone@remote.example',
      reason: 'hard_bounce',
      detail: 'userunknown',
    })
    const list = await ops('suppressions', 'list', '--did', m.did)
    assert.equal(list.code, 0, list.stderr)
    const entries = list.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    assert.deepEqual(
      entries.map((e) => [e.address, e.reason]),
      [['gone@remote.example', 'hard_bounce']],
    )
    const removed = await ops('suppressions', 'remove', '--did', m.did, '--address', 'Gone@remote.example')
    assert.equal(removed.code, 0, removed.stderr)
    assert.equal((await ops('suppressions', 'list', '--did', m.did)).stdout, '')
    assert.equal((await ops('suppressions', 'remove', '--did', m.did, '--address', 'gone@remote.example')).code, 1)
  })

  it('reinstates a suspended member and enqueues memberStatusChanged so the labeler re-issues', async () => {
    const m = await addMember(h.db)
    await h.db.update(members).set({ status: 'suspended', statusReason: 'complaints' }).where(eq(members.id, m.id))
    const out = await ops('reinstate', '--did', m.did, '--reason', 'list cleaned')
    assert.equal(out.code, 0, out.stderr)
    const r = JSON.parse(out.stdout)
    assert.equal(r.changed, true)
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
})
