import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { closedPort, ServiceProcess, testRedis } from '@atmos/testkit'
import type { AddedMember } from '../src/members/store.ts'
import { eventually } from './delivery-helpers.ts'
import { createMember, type Harness, SmtpDialog, startSubmission } from './helpers.ts'

// The login back-off must fail safe: a dead process's logins in flight lapse on their own,
// a database error is nobody's failed login, and without Redis the limits still hold.

const RELAY_ENTRY = new URL('../src/index.ts', import.meta.url)

/** The reply to a login over STARTTLS; `send: false` sends it without waiting for the reply. */
async function login(port: number, m: { username: string; password: string }): Promise<string> {
  const { dialog } = await SmtpDialog.open(port)
  try {
    await dialog.send('EHLO c.example')
    await dialog.starttls()
    await dialog.send('EHLO c.example')
    return await dialog.login(m.username, m.password)
  } finally {
    dialog.close()
  }
}

/** Queries of this database waiting on a lock of smtp_credentials. */
async function loginsWaiting(h: Harness): Promise<number> {
  const [row] = await h.sql<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock' and query like '%smtp_credentials%'`
  return row?.n ?? 0
}

describe('login back-off with Redis', () => {
  let h: Harness
  let member: AddedMember

  before(async () => {
    h = await startSubmission({
      ATMOS_RELAY_SUBMISSION_AUTH_FAILURE_LIMIT: '2',
      ATMOS_RELAY_SUBMISSION_AUTH_CONCURRENCY_PER_IP: '2',
      ATMOS_RELAY_SUBMISSION_AUTH_CHECK_LEASE: '2s',
    })
    member = await createMember(h, 'guard.example')
  })
  after(async () => {
    await h?.close()
  })

  it('a relay process killed mid-login leaves no login in flight behind: another logs that address in within the lease', async () => {
    const env = { ...h.env, ATMOS_LOG_LEVEL: 'info' }
    const listening = (p: ServiceProcess) =>
      p
        .waitForLog((l) => l.msg === 'submission listening (STARTTLS)')
        .then((l) => Number(String(l.smtp).split(':').at(-1)))
    // Two replicas, started together (a process takes seconds to start): the second one
    // stands for the process that comes up after the first was killed.
    const first = new ServiceProcess(RELAY_ENTRY, env)
    const second = new ServiceProcess(RELAY_ENTRY, env)
    const lock = await h.sql.reserve()
    const dialogs: SmtpDialog[] = []
    try {
      const [port, again] = await Promise.all([listening(first), listening(second)])
      // Two logins held in their check (the credentials table is locked): both places taken.
      await lock`begin`
      await lock`lock table smtp_credentials in access exclusive mode`
      for (let i = 0; i < 2; i++) {
        const { dialog } = await SmtpDialog.open(port)
        dialogs.push(dialog)
        await dialog.send('EHLO c.example')
        await dialog.starttls()
        await dialog.send('EHLO c.example')
        void dialog.login(member.username, member.password).catch(() => {})
      }
      await eventually(async () => ((await loginsWaiting(h)) >= 2 ? true : undefined))
      assert.equal(await login(port, member), '454 4.7.0 Too many logins at once from 127.0.0.1; try again shortly')
      const killed = await first.stop('SIGKILL')
      assert.equal(killed.signal, 'SIGKILL')
      await lock`commit`
      for (const d of dialogs) d.close()

      // Retries do not keep the dead process's places alive; the lease (2 s) frees them.
      const reply = await eventually(
        async () => {
          const r = await login(again, member)
          return r.startsWith('235') ? r : undefined
        },
        10_000,
        'a login from the same address',
      )
      assert.match(reply, /^235 /)
    } finally {
      await lock`rollback`.catch(() => {})
      lock.release()
      for (const d of dialogs) d.close()
      await first.stop('SIGKILL')
      await second.stop('SIGKILL')
    }
  })

  it('answers a database error with 454 4.7.0 and counts no failed login', async () => {
    const redis = testRedis()
    try {
      await h.sql`alter table smtp_credentials rename to smtp_credentials_away`
      try {
        // More errors than the failure limit (2): none of them counts.
        for (let i = 0; i < 3; i++) {
          assert.equal(await login(h.port, member), '454 4.7.0 Temporary authentication failure; try again later')
        }
      } finally {
        await h.sql`alter table smtp_credentials_away rename to smtp_credentials`
      }
      assert.equal(await redis.get(`${h.prefix}:relay:auth-failures:127.0.0.1`), null)
      assert.match(await login(h.port, member), /^235 /)
      assert.ok(h.submission.metrics.refused.value({ reason: 'auth_unavailable' }) >= 3)
    } finally {
      redis.disconnect()
    }
  })
})

describe('login back-off without Redis', () => {
  let h: Harness
  let member: AddedMember

  before(async () => {
    h = await startSubmission({
      ATMOS_REDIS_URL: `redis://127.0.0.1:${await closedPort()}/0`,
      ATMOS_RELAY_SUBMISSION_AUTH_FAILURE_LIMIT: '2',
    })
    member = await createMember(h, 'noredis-guard.example')
  })
  after(async () => {
    await h?.close()
  })

  it('still locks out an address that keeps guessing, counted by the process itself', async () => {
    const wrong = { username: member.username, password: 'wrong' }
    assert.match(await login(h.port, wrong), /^535 5\.7\.8 /)
    assert.match(await login(h.port, wrong), /^535 5\.7\.8 /)
    assert.equal(
      await login(h.port, member),
      '454 4.7.0 Too many failed logins from 127.0.0.1; try again in 15 minutes',
    )
  })
})
