import assert from 'node:assert/strict'
import { mkdtempSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createPool, type Pool } from '@atmos/db'
import { createDkimKey, dkimSealContext, PoolKeyUnavailableError, SigningKeys } from '@atmos/dkim'
import { memberStatusChanged, TypedQueue } from '@atmos/queues'
import { loadKeyring, verifyPassword } from '@atmos/secrets'
import {
  createTestDatabase,
  deletePrefix,
  TEST_REDIS_URL,
  type TestDatabase,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { POOL_DOMAIN, runCli } from './helpers.ts'

const DID = 'did:plc:clirelay7nxzyoun6zhxrhs64'

describe('relay operator commands', () => {
  let tdb: TestDatabase
  let sql: Pool
  let env: Record<string, string>
  let prefix: string

  before(async () => {
    tdb = await createTestDatabase()
    sql = createPool({ url: tdb.url, poolMax: 2 })
    const dir = mkdtempSync(join(tmpdir(), 'atmos-relay-cli-'))
    prefix = testRedisPrefix('relay-cli')
    env = {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: prefix,
      ATMOS_RELAY_KEK_FILE: join(dir, 'relay', 'kek'),
      ATMOS_RELAY_POOL_DOMAIN: POOL_DOMAIN,
      ATMOS_RELAY_POOL_TOKEN_SECRET_FILE: join(dir, 'pool', 'token.secret'),
      ATMOS_RELAY_POOL_KEK_FILE: join(dir, 'pool', 'kek'),
    }
  })
  after(async () => {
    const redis = testRedis()
    await deletePrefix(redis, prefix)
    redis.disconnect()
    await sql?.end({ timeout: 5 })
    await tdb?.drop()
  })

  it('keys init creates the KEK, the token secret and the pool DKIM key once', async () => {
    const first = await runCli(['keys', 'init'], env)
    assert.equal(first.code, 0, first.err)
    assert.match(first.out, /created .*kek \(mode 0600\)/)
    assert.match(first.out, /created .*token\.secret \(mode 0600\)/)
    assert.match(
      first.out,
      /^pool1\._domainkey\.pool\.example\. IN TXT "v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+" "[A-Za-z0-9+/=]+"$/m,
    )
    for (const f of [
      env.ATMOS_RELAY_KEK_FILE!,
      env.ATMOS_RELAY_POOL_KEK_FILE!,
      env.ATMOS_RELAY_POOL_TOKEN_SECRET_FILE!,
    ]) {
      assert.equal(statSync(f).mode & 0o777, 0o600)
    }
    // The pool's key is sealed under the pool's own KEK, which is not the relay's.
    const [poolKey] = await sql`select kek_id, private_key_sealed from dkim_keys where member_id is null`
    const poolRing = loadKeyring(env.ATMOS_RELAY_POOL_KEK_FILE!)
    const relayRing = loadKeyring(env.ATMOS_RELAY_KEK_FILE!)
    assert.ok(poolRing.has(poolKey!.kek_id))
    assert.ok(!relayRing.has(poolKey!.kek_id))
    assert.notEqual(poolRing.current.id, relayRing.current.id)
    const pem = poolRing.unseal(poolKey!.kek_id, poolKey!.private_key_sealed, dkimSealContext(POOL_DOMAIN, 'pool1'))
    assert.match(pem.toString(), /^-----BEGIN PRIVATE KEY-----/)
    const again = await runCli(['keys', 'init'], env)
    assert.equal(again.code, 0, again.err)
    assert.match(again.out, /kek already exists/)
    assert.match(again.out, /pool DKIM key pool1\._domainkey\.pool\.example already exists/)
    const keys = await sql`select * from dkim_keys where member_id is null`
    assert.equal(keys.length, 1)
  })

  let password = ''

  it('members add stores a sealed DKIM key and only a password hash; prints the record and the password once', async () => {
    const res = await runCli(
      ['members', 'add', '--did', DID, '--domain', 'Mail.Example.ORG', '--handle', 'op.example.org'],
      env,
    )
    assert.equal(res.code, 0, res.err)
    password = /^SMTP password: (\S+)$/m.exec(res.out)![1]!
    assert.match(res.out, /^SMTP username: mail\.example\.org$/m)
    assert.match(res.out, /^atmos1\._domainkey\.mail\.example\.org\. IN TXT "v=DKIM1; k=rsa; p=/m)
    const [member] = await sql`select id::int as id, status, handle, activated_at from members where did = ${DID}`
    assert.equal(member!.status, 'active')
    assert.equal(member!.handle, 'op.example.org')
    assert.ok(member!.activated_at)
    const [cred] = await sql`select username, password_hash from smtp_credentials where member_id = ${member!.id}`
    assert.equal(cred!.username, 'mail.example.org')
    assert.ok(!String(cred!.password_hash).includes(password))
    assert.equal(await verifyPassword(password, cred!.password_hash), true)
    const [key] =
      await sql`select domain, selector, public_key, private_key_sealed, kek_id, status from dkim_keys where member_id = ${member!.id}`
    assert.equal(key!.status, 'active')
    assert.ok(!Buffer.from(key!.private_key_sealed).includes(Buffer.from('PRIVATE KEY')))
    assert.ok(res.out.replaceAll('" "', '').includes(key!.public_key))
    const pem = loadKeyring(env.ATMOS_RELAY_KEK_FILE!).unseal(
      key!.kek_id,
      key!.private_key_sealed,
      dkimSealContext('mail.example.org', 'atmos1'),
    )
    assert.match(pem.toString(), /^-----BEGIN PRIVATE KEY-----/)
    assert.ok(!res.out.includes('PRIVATE KEY'))
    // A process given only the pool's KEK (fbl-ingest, delivery) cannot open a member's key.
    const poolOnly = new SigningKeys(sql, { pool: loadKeyring(env.ATMOS_RELAY_POOL_KEK_FILE!) })
    await assert.rejects(poolOnly.member(member!.id), /holds no members' key-encryption key/)
    assert.throws(
      () =>
        loadKeyring(env.ATMOS_RELAY_POOL_KEK_FILE!).unseal(
          key!.kek_id,
          key!.private_key_sealed,
          dkimSealContext('mail.example.org', 'atmos1'),
        ),
      /is not in the keyring/,
    )

    const dup = await runCli(['members', 'add', '--did', 'did:plc:other', '--domain', 'mail.example.org'], env)
    assert.equal(dup.code, 1)
    assert.match(dup.err, /a member already exists for mail\.example\.org/)
    const bad = await runCli(['members', 'add', '--did', 'nope', '--domain', 'x.example'], env)
    assert.match(bad.err, /not a DID/)
    const usage = await runCli(['members', 'add', '--did', DID], env)
    assert.equal(usage.code, 64)
  })

  it('keys reseal-pool moves a pool key still sealed under the relay KEK under the pool KEK; until then a pool-only process names the command', async () => {
    // As a deployment from before the pool had its own KEK left it.
    await createDkimKey(sql, loadKeyring(env.ATMOS_RELAY_KEK_FILE!), {
      memberId: null,
      domain: 'legacy.example',
      selector: 'old1',
    })
    const poolOnly = () => new SigningKeys(sql, { pool: loadKeyring(env.ATMOS_RELAY_POOL_KEK_FILE!) })
    await assert.rejects(
      poolOnly().pool('legacy.example'),
      (err: Error) =>
        err instanceof PoolKeyUnavailableError &&
        /old1\._domainkey\.legacy\.example.*relay keys reseal-pool/.test(err.message),
    )
    // A process with both KEKs (submission) still signs with it meanwhile.
    const both = new SigningKeys(sql, {
      members: loadKeyring(env.ATMOS_RELAY_KEK_FILE!),
      pool: loadKeyring(env.ATMOS_RELAY_POOL_KEK_FILE!),
    })
    assert.equal((await both.pool('legacy.example'))?.selector, 'old1')
    const res = await runCli(['keys', 'reseal-pool'], env)
    assert.equal(res.code, 0, res.err)
    assert.match(res.out, /re-sealed 1 pool DKIM key under .*pool\/kek/)
    assert.equal((await poolOnly().pool('legacy.example'))?.selector, 'old1')
    const again = await runCli(['keys', 'reseal-pool'], env)
    assert.match(again.out, /every pool DKIM key is sealed under/)
    // Members' keys stay where they were.
    const [member] = await sql`select kek_id from dkim_keys where member_id is not null`
    assert.ok(loadKeyring(env.ATMOS_RELAY_KEK_FILE!).has(member!.kek_id))
  })

  it('members list shows each member with its status', async () => {
    const res = await runCli(['members', 'list'], env)
    assert.equal(res.code, 0, res.err)
    assert.match(res.out, new RegExp(`active\\s+mail\\.example\\.org\\s+${DID}\\s+active since \\d{4}-\\d\\d-\\d\\d`))
  })

  it('suspend and reinstate record the change and tell the labeler', async () => {
    const redis = testRedis()
    const queue = new TypedQueue(memberStatusChanged, redis, prefix)
    try {
      const res = await runCli(['members', 'suspend', 'mail.example.org', '--reason', 'complaints over 0.3%'], env)
      assert.equal(res.code, 0, res.err)
      assert.match(res.out, /active → suspended \(change (\d+)\)/)
      const changeId = Number(/change (\d+)\)/.exec(res.out)![1])
      const [m] = await sql`select status, status_reason, suspended_at from members where did = ${DID}`
      assert.equal(m!.status, 'suspended')
      assert.equal(m!.status_reason, 'complaints over 0.3%')
      assert.ok(m!.suspended_at)
      const [row] =
        await sql`select from_status, to_status, reason, actor from member_status_changes where id = ${changeId}`
      assert.deepEqual(
        { ...row },
        { from_status: 'active', to_status: 'suspended', reason: 'complaints over 0.3%', actor: row!.actor },
      )
      assert.match(String(row!.actor), /^operator:/)
      const job = await queue.queue.getJob(`status-change-${changeId}`)
      assert.deepEqual(job?.data, { did: DID, status: 'suspended', reason: 'complaints over 0.3%', changeId })

      const back = await runCli(['members', 'reinstate', DID, '--reason', 'reviewed'], env)
      assert.equal(back.code, 0, back.err)
      const backId = Number(/change (\d+)\)/.exec(back.out)![1])
      assert.equal((await queue.queue.getJob(`status-change-${backId}`))?.data.status, 'active')
      const [after] = await sql`select status, suspended_at from members where did = ${DID}`
      assert.deepEqual({ ...after }, { status: 'active', suspended_at: null })

      const noReason = await runCli(['members', 'suspend', DID], env)
      assert.equal(noReason.code, 64)
      const unknown = await runCli(['members', 'suspend', 'did:plc:nobody', '--reason', 'x'], env)
      assert.equal(unknown.code, 1)
      assert.match(unknown.err, /no member did:plc:nobody/)
    } finally {
      await queue.close()
      redis.disconnect()
    }
  })

  it('suspend reports a labeler it could not reach (exit 75) and keeps the change', async () => {
    const res = await runCli(['members', 'suspend', DID, '--reason', 'redis down'], {
      ...env,
      ATMOS_REDIS_URL: 'redis://127.0.0.1:9/0',
    })
    assert.equal(res.code, 75, res.out + res.err)
    assert.match(res.err, /status recorded, but Redis did not take the event: fbl-ingest will re-send it/)
    const [m] = await sql`select status from members where did = ${DID}`
    assert.equal(m!.status, 'suspended')
    // The event waits in the outbox for fbl-ingest's reconciler.
    const [change] = await sql`
      select c.notified_at from member_status_changes c join members m on m.id = c.member_id
      where m.did = ${DID} order by c.id desc limit 1`
    assert.equal(change!.notified_at, null)
  })

  it('rotate-password prints a new password once and the old one stops working', async () => {
    const res = await runCli(['members', 'rotate-password', DID], env)
    assert.equal(res.code, 0, res.err)
    const fresh = /^SMTP password: (\S+)$/m.exec(res.out)![1]!
    assert.notEqual(fresh, password)
    const [cred] =
      await sql`select password_hash from smtp_credentials c join members m on m.id = c.member_id where m.did = ${DID}`
    assert.equal(await verifyPassword(fresh, cred!.password_hash), true)
    assert.equal(await verifyPassword(password, cred!.password_hash), false)
  })
})
