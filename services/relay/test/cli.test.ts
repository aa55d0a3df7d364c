import assert from 'node:assert/strict'
import { createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto'
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
const OTHER = 'did:plc:clirelayotherzzzzzzzzzzz'
const THIRD = 'did:plc:clirelaythirdzzzzzzzzzzz'

/** A DKIM record the command printed as a zone-file line: its strings joined, its tags. */
function printedRecord(out: string, name: string): Record<string, string> {
  const line = out.split('\n').find((l) => l.startsWith(`${name}. IN TXT `))
  assert.ok(line, `no record for ${name} in:\n${out}`)
  const strings = [...line.slice(`${name}. IN TXT `.length).matchAll(/"([^"]*)"/g)].map((m) => m[1]!)
  for (const s of strings) assert.ok(Buffer.byteLength(s) <= 255, 'each string at most 255 octets')
  return Object.fromEntries(
    strings
      .join('')
      .split(';')
      .map((t) => t.trim().split('=') as [string, string])
      .map(([k, ...v]) => [k, v.join('=')]),
  )
}

/** True when the record's key verifies a signature the private key made. */
function recordVerifies(record: Record<string, string>, pem: Buffer): boolean {
  const raw = Buffer.from(record.p!, 'base64')
  const data = Buffer.from('what a DKIM signature covers')
  if (record.k === 'ed25519') {
    const key = createPublicKey({
      key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]),
      format: 'der',
      type: 'spki',
    })
    return cryptoVerify(null, data, key, cryptoSign(null, data, pem))
  }
  const key = createPublicKey({ key: raw, format: 'der', type: 'spki' })
  return cryptoVerify('sha256', data, key, cryptoSign('sha256', data, pem))
}

/** The attestation record the command printed for `domain`. */
function printedAttestation(out: string, domain: string) {
  const lines = out.split('\n')
  const i = lines.findIndex((l) => l.includes(`collection email.atmos.attestation, record key ${domain}:`))
  assert.ok(i >= 0, `no attestation for ${domain} in:\n${out}`)
  return JSON.parse(lines[i + 1]!) as {
    $type: string
    domain: string
    dkimSelectors: string[]
    relayMember: boolean
    createdAt: string
  }
}

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

  it('an empty listing says so', async () => {
    const members = await runCli(['members', 'list'], env)
    assert.equal(members.code, 0, members.err)
    assert.equal(members.out, 'no members\n')
    const domains = await runCli(['domains', 'list'], env)
    assert.equal(domains.code, 0, domains.err)
    assert.equal(domains.out, 'no domains\n')
    const ofDid = await runCli(['domains', 'list', DID], env)
    assert.equal(ofDid.out, `${DID} holds no domains\n`)
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

  it('members add enrols the member with its first domain: two sealed keys, a scoped credential, the records to publish', async () => {
    const res = await runCli(['members', 'add', DID, 'Mail.Example.ORG', '--handle', 'op.example.org'], env)
    assert.equal(res.code, 0, res.err)
    password = /^SMTP password: (\S+)$/m.exec(res.out)![1]!
    assert.match(res.out, /^SMTP username: mail\.example\.org$/m)
    const [member] = await sql`select id::int as id, status, handle, activated_at from members where did = ${DID}`
    assert.equal(member!.status, 'active')
    assert.equal(member!.handle, 'op.example.org')
    assert.ok(member!.activated_at)
    const [domain] = await sql`
      select id::int as id, domain, status, activated_at, removed_at from domains where member_id = ${member!.id}`
    assert.deepEqual(
      { domain: domain!.domain, status: domain!.status, removed: domain!.removed_at },
      { domain: 'mail.example.org', status: 'active', removed: null },
    )
    assert.ok(domain!.activated_at, 'the domain warms from now')
    const [cred] =
      await sql`select username, password_hash, domain_id::int as domain_id from smtp_credentials where member_id = ${member!.id}`
    assert.equal(cred!.username, 'mail.example.org')
    assert.equal(cred!.domain_id, domain!.id, 'the credential is scoped to the domain')
    assert.ok(!String(cred!.password_hash).includes(password))
    assert.equal(await verifyPassword(password, cred!.password_hash), true)
    const keys = await sql`
      select domain, selector, algorithm, public_key, private_key_sealed, kek_id, status, domain_id::int as domain_id
      from dkim_keys where member_id = ${member!.id} order by selector desc`
    assert.deepEqual(
      keys.map((k) => [k.selector, k.algorithm, k.status, k.domain_id]),
      [
        ['atmos1r', 'rsa-sha256', 'active', domain!.id],
        ['atmos1e', 'ed25519-sha256', 'active', domain!.id],
      ],
    )
    const ring = loadKeyring(env.ATMOS_RELAY_KEK_FILE!)
    for (const key of keys) {
      assert.ok(!Buffer.from(key.private_key_sealed).includes(Buffer.from('PRIVATE KEY')))
      // The printed record holds the key that verifies what the sealed private key signs.
      const record = printedRecord(res.out, `${key.selector}._domainkey.mail.example.org`)
      const pem = ring.unseal(key.kek_id, key.private_key_sealed, dkimSealContext('mail.example.org', key.selector))
      assert.equal(recordVerifies(record, pem), true, key.selector)
      assert.equal(record.p, key.public_key)
    }
    assert.equal(printedRecord(res.out, 'atmos1r._domainkey.mail.example.org').k, 'rsa')
    assert.equal(printedRecord(res.out, 'atmos1e._domainkey.mail.example.org').k, 'ed25519')
    assert.ok(!res.out.includes('PRIVATE KEY'))
    const attestation = printedAttestation(res.out, 'mail.example.org')
    assert.equal(attestation.$type, 'email.atmos.attestation')
    assert.equal(attestation.domain, 'mail.example.org')
    assert.deepEqual(attestation.dkimSelectors, ['atmos1r', 'atmos1e'])
    assert.equal(attestation.relayMember, true)
    assert.ok(Math.abs(Date.parse(attestation.createdAt) - Date.now()) < 60_000)
    const audit = await sql`select actor, action, did, domain, detail from audit_log where member_id = ${member!.id}`
    assert.deepEqual(
      audit.map((a) => [a.action, a.did, a.domain]),
      [['domain.added', DID, 'mail.example.org']],
    )
    assert.match(String(audit[0]!.actor), /^operator:/)
    assert.ok(!JSON.stringify(audit).includes(password))
    // A process given only the pool's KEK (fbl-ingest, delivery) cannot open a member's key.
    const poolOnly = new SigningKeys(sql, { pool: loadKeyring(env.ATMOS_RELAY_POOL_KEK_FILE!) })
    await assert.rejects(poolOnly.domain(domain!.id), /holds no members' key-encryption key/)
    assert.throws(
      () =>
        loadKeyring(env.ATMOS_RELAY_POOL_KEK_FILE!).unseal(
          keys[0]!.kek_id,
          keys[0]!.private_key_sealed,
          dkimSealContext('mail.example.org', 'atmos1r'),
        ),
      /is not in the keyring/,
    )
    // Both keys of the domain sign, RSA first.
    const both = new SigningKeys(sql, { members: ring })
    assert.deepEqual(
      (await both.domain(domain!.id)).map((k) => [k.selector, k.algorithm]),
      [
        ['atmos1r', 'rsa-sha256'],
        ['atmos1e', 'ed25519-sha256'],
      ],
    )

    const dup = await runCli(['members', 'add', '--did', DID, '--domain', 'another.example'], env)
    assert.equal(dup.code, 1)
    assert.match(
      dup.err,
      /a member already exists for did:plc:clirelay7nxzyoun6zhxrhs64; add a domain with: relay domains add/,
    )
    const held = await runCli(['members', 'add', '--did', OTHER, '--domain', 'mail.example.org'], env)
    assert.equal(held.code, 1)
    assert.match(held.err, new RegExp(`mail\\.example\\.org is held in the relay by ${DID}`))
    assert.equal((await sql`select 1 from members where did = ${OTHER}`).length, 0, 'nothing of a refused add stays')
    const bad = await runCli(['members', 'add', '--did', 'nope', '--domain', 'x.example'], env)
    assert.match(bad.err, /not a DID/)
    const badDomain = await runCli(['members', 'add', '--did', OTHER, '--domain', 'not_a domain'], env)
    assert.equal(badDomain.code, 1)
    assert.match(badDomain.err, /not a domain name: not_a domain/)
    const usage = await runCli(['members', 'add', '--did', DID], env)
    assert.equal(usage.code, 64)
    assert.match(usage.err, /usage: relay members add <did> <domain>/)
    const twice = await runCli(['members', 'add', DID, 'x.example', '--did', DID], env)
    assert.equal(twice.code, 64)
    assert.match(twice.err, /give <did> once: as an argument or --did, not both/)
    const extra = await runCli(['members', 'add', DID, 'x.example', 'y.example'], env)
    assert.equal(extra.code, 64)
    assert.match(extra.err, /unexpected argument y\.example/)
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

  it('domains add gives the member a second domain (its own selectors and credential) and refuses a third, a held one and one another DID attests', async () => {
    const res = await runCli(['domains', 'add', DID, 'Second.Example', '--selector', 's2'], env)
    assert.equal(res.code, 0, res.err)
    assert.match(
      res.out,
      /^domain second\.example added to did:plc:clirelay7nxzyoun6zhxrhs64 \(active, day 0, cap 50\/day\)$/m,
    )
    assert.match(res.out, /^SMTP username: second\.example$/m)
    const second = /^SMTP password: (\S+)$/m.exec(res.out)![1]!
    assert.notEqual(second, password)
    for (const selector of ['s2r', 's2e']) {
      const [key] = await sql`
        select kek_id, private_key_sealed from dkim_keys where domain = 'second.example' and selector = ${selector}`
      const pem = loadKeyring(env.ATMOS_RELAY_KEK_FILE!).unseal(
        key!.kek_id,
        key!.private_key_sealed,
        dkimSealContext('second.example', selector),
      )
      assert.equal(recordVerifies(printedRecord(res.out, `${selector}._domainkey.second.example`), pem), true)
    }
    assert.deepEqual(printedAttestation(res.out, 'second.example').dkimSelectors, ['s2r', 's2e'])
    const [cred] = await sql`
      select c.password_hash, d.domain from smtp_credentials c join domains d on d.id = c.domain_id
      where c.username = 'second.example'`
    assert.equal(cred!.domain, 'second.example')
    assert.equal(await verifyPassword(second, cred!.password_hash), true)

    // At most pool.maxDomainsPerMember (2 by default).
    const third = await runCli(['domains', 'add', DID, 'third.example'], env)
    assert.equal(third.code, 1)
    assert.match(
      third.err,
      /already holds 2 domains \(mail\.example\.org, second\.example\): at most 2 a member \(pool\.maxDomainsPerMember\)/,
    )
    const more = await runCli(['domains', 'add', DID, 'third.example'], {
      ...env,
      ATMOS_RELAY_POOL_MAX_DOMAINS_PER_MEMBER: '3',
    })
    assert.equal(more.code, 0, more.err)
    const gone = await runCli(['domains', 'remove', 'third.example', '--reason', 'not needed after all'], env)
    assert.equal(gone.code, 0, gone.err)

    // Another member: a domain held in the relay, or one another DID's attestation holds, is refused.
    // The older flag form still works, with a deprecation line on stderr.
    const other = await runCli(['members', 'add', '--did', OTHER, '--domain', 'other.example'], env)
    assert.equal(other.code, 0, other.err)
    assert.match(other.err, /relay members add: deprecated: --did did:plc:\S+: give <did> as an argument/)
    assert.match(other.err, /deprecated: --domain other\.example/)
    const taken = await runCli(['domains', 'add', OTHER, 'second.example'], env)
    assert.equal(taken.code, 1)
    assert.match(
      taken.err,
      new RegExp(`second\\.example is held in the relay by ${DID}; a domain belongs to one account at a time`),
    )
    await sql`
      insert into verification_status (did, domain, holds, last_outcome, last_run_at, last_pass_at)
      values (${THIRD}, 'claimed.example', true, 'pass', now(), now())`
    const claimed = await runCli(['domains', 'add', OTHER, 'claimed.example'], env)
    assert.equal(claimed.code, 1)
    assert.match(claimed.err, new RegExp(`claimed\\.example is held by ${THIRD} \\(its attestation for it verifies\\)`))
    const unknown = await runCli(['domains', 'add', 'did:plc:nobody', 'free.example'], env)
    assert.equal(unknown.code, 1)
    assert.match(unknown.err, /no member did:plc:nobody/)
    const bad = await runCli(['domains', 'add', OTHER, 'bad..example'], env)
    assert.equal(bad.code, 1)
    assert.match(bad.err, /not a domain name: bad\.\.example/)
    assert.equal((await sql`select 1 from domains where domain in ('claimed.example', 'free.example')`).length, 0)
    const usage = await runCli(['domains', 'add', OTHER], env)
    assert.equal(usage.code, 64)
    assert.match(usage.err, /usage: relay domains add <did> <domain> \[--selector STEM\]/)
  })

  it('members list shows each member with its domains; domains list shows status, warming, selectors and credential', async () => {
    const res = await runCli(['members', 'list'], env)
    assert.equal(res.code, 0, res.err)
    assert.match(
      res.out,
      new RegExp(
        `active\\s+${DID}\\s+active since \\d{4}-\\d\\d-\\d\\d\\n\\s+mail\\.example\\.org\\s+active\\n\\s+second\\.example\\s+active\\n`,
      ),
    )
    assert.match(res.out, new RegExp(`active\\s+${OTHER}\\s+active since .*\\n\\s+other\\.example\\s+active`))
    assert.ok(!res.out.includes('third.example'), 'a removed domain is not listed')
    const domains = await runCli(['domains', 'list', DID], env)
    assert.equal(domains.code, 0, domains.err)
    const lines = domains.out.trim().split('\n')
    assert.equal(lines.length, 2)
    assert.match(
      lines[0]!,
      new RegExp(
        `^mail\\.example\\.org\\s+${DID}\\s+active\\s+day 0, cap 50/day\\s+selectors atmos1r,atmos1e\\s+username mail\\.example\\.org$`,
      ),
    )
    assert.match(lines[1]!, /^second\.example\s+.*selectors s2r,s2e\s+username second\.example$/)
    await sql`update domains set activated_at = now() - interval '20 days' where domain = 'other.example'`
    const all = await runCli(['domains', 'list'], env)
    assert.match(all.out, new RegExp(`^other\\.example\\s+${OTHER}\\s+active\\s+warm, cap 10000/day`, 'm'))
    assert.equal(all.out.trim().split('\n').length, 3)
  })

  it('suspend and reinstate a member by DID record the change and tell the labeler', async () => {
    const redis = testRedis()
    const queue = new TypedQueue(memberStatusChanged, redis, prefix)
    try {
      const res = await runCli(['members', 'suspend', DID, '--reason', 'complaints over 0.3%'], env)
      assert.equal(res.code, 0, res.err)
      assert.match(res.out, /active → suspended \(change (\d+)\)/)
      const changeId = Number(/change (\d+)\)/.exec(res.out)![1])
      const [m] = await sql`select status, status_reason, suspended_at from members where did = ${DID}`
      assert.equal(m!.status, 'suspended')
      assert.equal(m!.status_reason, 'complaints over 0.3%')
      assert.ok(m!.suspended_at)
      const [row] = await sql`
        select from_status, to_status, reason, actor, domain_id from member_status_changes where id = ${changeId}`
      assert.deepEqual(
        { ...row },
        {
          from_status: 'active',
          to_status: 'suspended',
          reason: 'complaints over 0.3%',
          actor: row!.actor,
          domain_id: null,
        },
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
      assert.match(noReason.err, /usage: relay members suspend <did\|domain> --reason REASON/)
      const unknown = await runCli(['members', 'suspend', 'did:plc:nobody', '--reason', 'x'], env)
      assert.equal(unknown.code, 1)
      assert.match(unknown.err, /no member did:plc:nobody/)
    } finally {
      await queue.close()
      redis.disconnect()
    }
  })

  it('suspend and reinstate by domain change that domain only, with its history, audit row and event', async () => {
    const redis = testRedis()
    const queue = new TypedQueue(memberStatusChanged, redis, prefix)
    try {
      const res = await runCli(['members', 'suspend', 'Second.Example', '--reason', 'spam from this domain'], env)
      assert.equal(res.code, 0, res.err)
      assert.match(res.out, /^second\.example: active → suspended \(change \d+\)$/m)
      const changeId = Number(/change (\d+)\)/.exec(res.out)![1])
      const [d] =
        await sql`select id::int as id, status, status_reason, suspended_at from domains where domain = 'second.example'`
      assert.equal(d!.status, 'suspended')
      assert.equal(d!.status_reason, 'spam from this domain')
      assert.ok(d!.suspended_at)
      const states =
        await sql`select d.domain, d.status from domains d join members m on m.id = d.member_id where m.did = ${DID} and d.removed_at is null order by d.domain`
      assert.deepEqual(
        states.map((r) => [r.domain, r.status]),
        [
          ['mail.example.org', 'active'],
          ['second.example', 'suspended'],
        ],
      )
      const [m] = await sql`select status from members where did = ${DID}`
      assert.equal(m!.status, 'active', 'the member stays active')
      const [row] =
        await sql`select domain_id::int as domain_id, from_status, to_status from member_status_changes where id = ${changeId}`
      assert.deepEqual({ ...row }, { domain_id: d!.id, from_status: 'active', to_status: 'suspended' })
      const job = await queue.queue.getJob(`status-change-${changeId}`)
      assert.deepEqual(job?.data, { did: DID, status: 'suspended', reason: 'spam from this domain', changeId })
      const back = await runCli(['members', 'reinstate', 'second.example', '--reason', 'cleaned up'], env)
      assert.equal(back.code, 0, back.err)
      const [after] = await sql`select status, suspended_at from domains where id = ${d!.id}`
      assert.deepEqual({ ...after }, { status: 'active', suspended_at: null })
      const audit =
        await sql`select action, did, detail from audit_log where domain = 'second.example' and action like 'domain.%' order by id`
      assert.deepEqual(
        audit.map((a) => [a.action, a.did]),
        [
          ['domain.added', DID],
          ['domain.suspended', DID],
          ['domain.reinstated', DID],
        ],
      )
      const unknown = await runCli(['members', 'suspend', 'nobody.example', '--reason', 'x'], env)
      assert.equal(unknown.code, 1)
      assert.match(unknown.err, /no member holds nobody\.example in the relay/)
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

  it('rotate-password by domain replaces that credential only; by DID each of the member, printed once each', async () => {
    const hashOf = async (username: string) =>
      (await sql`select password_hash from smtp_credentials where username = ${username}`)[0]!.password_hash as string
    const before = await hashOf('second.example')
    const res = await runCli(['members', 'rotate-password', 'mail.example.org'], env)
    assert.equal(res.code, 0, res.err)
    assert.deepEqual(
      [...res.out.matchAll(/^SMTP username: (\S+)$/gm)].map((m) => m[1]),
      ['mail.example.org'],
    )
    const fresh = /^SMTP password: (\S+)$/m.exec(res.out)![1]!
    assert.notEqual(fresh, password)
    assert.equal(await verifyPassword(fresh, await hashOf('mail.example.org')), true)
    assert.equal(await verifyPassword(password, await hashOf('mail.example.org')), false)
    assert.equal(await hashOf('second.example'), before, "the other domain's credential is untouched")

    const all = await runCli(['members', 'rotate-password', DID], env)
    assert.equal(all.code, 0, all.err)
    const users = [...all.out.matchAll(/^SMTP username: (\S+)\nSMTP password: (\S+)$/gm)].map((m) => [m[1]!, m[2]!])
    assert.deepEqual(
      users.map(([u]) => u),
      ['mail.example.org', 'second.example'],
    )
    for (const [u, p] of users) assert.equal(await verifyPassword(p!, await hashOf(u!)), true, u)
    assert.equal(await verifyPassword(fresh, await hashOf('mail.example.org')), false)
    const audit =
      await sql`select domain, detail from audit_log where action = 'credential.rotated' and did = ${DID} order by id`
    assert.equal(audit.length, 3)
    assert.equal(audit[0]!.domain, 'mail.example.org')
    assert.ok(!JSON.stringify(audit).includes(fresh), 'no secret in the audit log')
    const usage = await runCli(['members', 'rotate-password'], env)
    assert.equal(usage.code, 64)
  })

  it('domains remove keeps the row, revokes its credential, retires its keys and tells the labeler; suppressions carry over to the next holder', async () => {
    const redis = testRedis()
    const queue = new TypedQueue(memberStatusChanged, redis, prefix)
    try {
      const [d] =
        await sql`select id::int as id, member_id::int as member_id from domains where domain = 'second.example' and removed_at is null`
      // A recipient who complained about second.example's mail, and one whose entry was lifted.
      await sql`
        insert into suppressions (member_id, domain_id, address, reason, removed_at) values
          (${d!.member_id}, ${d!.id}, 'angry@dest.example', 'complaint', null),
          (${d!.member_id}, ${d!.id}, 'lifted@dest.example', 'manual', now())`
      const res = await runCli(['domains', 'remove', 'second.example', '--reason', 'the operator gave it up'], env)
      assert.equal(res.code, 0, res.err)
      assert.match(
        res.out,
        /^second\.example removed from .* \(change \d+\); revoked 1 credential, retired 2 DKIM keys$/m,
      )
      const changeId = Number(/change (\d+)\)/.exec(res.out)![1])
      const [row] = await sql`select removed_at, removed_reason from domains where id = ${d!.id}`
      assert.ok(row!.removed_at)
      assert.equal(row!.removed_reason, 'the operator gave it up')
      const creds = await sql`select revoked_at from smtp_credentials where domain_id = ${d!.id}`
      assert.ok(creds.length === 1 && creds[0]!.revoked_at)
      const keys = await sql`select status from dkim_keys where domain_id = ${d!.id}`
      assert.deepEqual(
        keys.map((k) => k.status),
        ['retired', 'retired'],
      )
      const [change] =
        await sql`select domain_id::int as domain_id, to_status, reason from member_status_changes where id = ${changeId}`
      assert.deepEqual(
        { ...change },
        { domain_id: d!.id, to_status: 'suspended', reason: 'domain removed: the operator gave it up' },
      )
      const job = await queue.queue.getJob(`status-change-${changeId}`)
      assert.equal(job?.data.did, DID)
      const [audit] =
        await sql`select did, detail from audit_log where action = 'domain.removed' and domain = 'second.example'`
      assert.equal(audit!.did, DID)
      assert.equal(audit!.detail.reason, 'the operator gave it up')
      const again = await runCli(['domains', 'remove', 'second.example', '--reason', 'x'], env)
      assert.equal(again.code, 1)
      assert.match(again.err, /no member holds second\.example in the relay/)

      // The next holder gets a fresh credential under the same username and the standing suppression.
      const next = await runCli(['domains', 'add', OTHER, 'second.example'], env)
      assert.equal(next.code, 0, next.err)
      assert.match(next.out, /^carried over 1 suppression from earlier holders of second\.example$/m)
      const carried = await sql`
        select s.address, s.reason, s.domain_id::int as domain_id from suppressions s join members m on m.id = s.member_id
        where m.did = ${OTHER}`
      const [nd] = await sql`select id::int as id from domains where domain = 'second.example' and removed_at is null`
      assert.deepEqual(
        carried.map((c) => [c.address, c.reason, c.domain_id]),
        [['angry@dest.example', 'complaint', nd!.id]],
      )
      // The earlier holder's revoked credential keeps its row and name; the new one is live beside it.
      const named = await sql<{ member_id: number; revoked_at: Date | null }[]>`
        select member_id::int as member_id, revoked_at from smtp_credentials where username = 'second.example' order by id`
      assert.equal(named.length, 2)
      assert.equal(named[0]!.member_id, d!.member_id)
      assert.ok(named[0]!.revoked_at, 'the old holder’s credential stays revoked')
      assert.equal(named[1]!.revoked_at, null)
      assert.notEqual(named[1]!.member_id, d!.member_id)
    } finally {
      await queue.close()
      redis.disconnect()
    }
  })

  it('every command answers --help with its usage (exit 0); a usage error exits 64 with the usage', async () => {
    const top = await runCli(['--help'], env)
    assert.equal(top.code, 0, top.err)
    for (const usage of [
      'relay keys init',
      'relay keys reseal-pool',
      'relay members add',
      'relay members list',
      'relay members suspend',
      'relay members reinstate',
      'relay members rotate-password',
      'relay domains add',
      'relay domains list',
      'relay domains remove',
    ]) {
      assert.ok(top.out.includes(usage), usage)
      const [, group, command] = usage.split(' ')
      const help = await runCli([group!, command!, '--help'], env)
      assert.equal(help.code, 0, help.err)
      assert.ok(help.out.startsWith(`usage: ${usage}`), help.out)
    }
    for (const group of ['keys', 'members', 'domains']) {
      const help = await runCli([group, '--help'], env)
      assert.equal(help.code, 0)
      assert.match(help.out, new RegExp(`relay ${group} `))
    }
    for (const args of [
      [],
      ['bogus'],
      ['domains'],
      ['domains', 'bogus'],
      ['domains', 'list', 'a', 'b'],
      ['members', 'list', '--nope'],
    ]) {
      const res = await runCli(args, env)
      assert.equal(res.code, 64, args.join(' '))
      assert.match(res.err, /usage/)
    }
  })
})
