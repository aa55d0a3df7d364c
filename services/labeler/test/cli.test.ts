import assert from 'node:assert/strict'
import { mkdtempSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { attestations, createDb, type Db, verificationRuns, verificationStatus } from '@atmos/db'
import { createTestDatabase, goodMailZone, runCli, type TestDatabase, TestDnsServer, withNames } from '@atmos/testkit'
import { AtpAgent } from '@atproto/api'
import { TestNetworkNoAppView } from '@atproto/dev-env'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const DID = 'did:plc:clitest7nxzyoun6zhxrhs64'

// Its own process, so that the DNS server living in this one can answer it.
const run = (args: string[], env: Record<string, string>) => runCli(cli, args, env)

describe('labeler operator commands', () => {
  let tdb: TestDatabase
  let db: Db
  let dns: TestDnsServer
  let env: Record<string, string>

  before(async () => {
    tdb = await createTestDatabase()
    db = createDb({ url: tdb.url, poolMax: 1 })
    dns = new TestDnsServer({
      ...goodMailZone('ok.example', DID),
      ...goodMailZone('two.example', DID),
      ...goodMailZone('weak.example', DID),
    })
    dns.zone = withNames(dns.zone, { '_dmarc.weak.example': { TXT: ['v=DMARC1; p=none'] } })
    await dns.start()
    await db.insert(attestations).values([
      { did: DID, rkey: 'self', domain: 'ok.example', dkimSelectors: ['atmos1'] },
      { did: DID, rkey: 'two.example', domain: 'two.example', dkimSelectors: ['atmos1'] },
      { did: 'did:plc:weak', rkey: 'self', domain: 'weak.example', dkimSelectors: ['atmos1'] },
    ])
    env = {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_LABELER_SIGNING_KEY_FILE: join(mkdtempSync(join(tmpdir(), 'atmos-cli-')), 'keys', 'label.key'),
      ATMOS_LABELER_VERIFY_DNS_SERVERS: '127.0.0.1',
      ATMOS_LABELER_VERIFY_DNS_PORT: String(dns.port),
      ATMOS_LABELER_VERIFY_DNS_TIMEOUT: '500ms',
      ATMOS_LABELER_VERIFY_DNS_TRIES: '1',
      ATMOS_LABELER_VERIFY_PLC_URL: 'http://127.0.0.1:9',
      ATMOS_LABELER_PUBLIC_URL: 'https://labeler.atmos.example',
    }
  })
  after(async () => {
    await db?.$client.end()
    await dns?.close()
    await tdb?.drop()
  })

  it('init creates the key 0600 once and never overwrites it', async () => {
    const first = await run(['init'], env)
    assert.equal(first.code, 0, first.err)
    const didKey = first.out.trim().split('\n').at(-1)!
    assert.match(didKey, /^did:key:zQ3s/)
    assert.equal(statSync(env.ATMOS_LABELER_SIGNING_KEY_FILE!).mode & 0o777, 0o600)
    const again = await run(['init'], env)
    assert.equal(again.code, 0)
    assert.match(again.out, /already exists/)
    assert.equal(again.out.trim().split('\n').at(-1), didKey)
  })

  it('verify prints every check and exits 0 only when all pass', async () => {
    const ok = await run(['verify', 'ok.example'], env)
    assert.equal(ok.code, 0, ok.out + ok.err)
    assert.match(ok.out, /^ok\.example \(did:plc:clitest7nxzyoun6zhxrhs64\): PASS/)
    for (const check of ['domain_control', 'mx', 'spf', 'dkim', 'dmarc'])
      assert.match(ok.out, new RegExp(`\\n  ${check}\\s+pass `))
    // A DID with two domains: each checked and shown, with what the labeler recorded of it.
    const [lastRun] = await db
      .insert(verificationRuns)
      .values({ did: DID, domain: 'ok.example', trigger: 'schedule', outcome: 'pass' })
      .returning()
    await db.insert(verificationStatus).values({
      did: DID,
      domain: 'ok.example',
      holds: true,
      lastRunId: lastRun!.id,
      lastOutcome: 'pass',
      lastRunAt: new Date('2026-11-30T10:00:00Z'),
    })
    const byDid = await run(['verify', DID], env)
    assert.equal(byDid.code, 0, byDid.out + byDid.err)
    assert.match(byDid.out, /^ok\.example \(did:plc:clitest7nxzyoun6zhxrhs64\): PASS/m)
    assert.match(byDid.out, /^two\.example \(did:plc:clitest7nxzyoun6zhxrhs64\): PASS/m)
    assert.match(byDid.out, /\n {2}standing\s+held by this DID \(last run pass at 2026-11-30T10:00:00\.000Z\)/)
    const weak = await run(['verify', 'weak.example'], env)
    assert.equal(weak.code, 1)
    assert.match(weak.out, /dmarc\s+fail\s+.*p=none/)
  })

  it('verify reports a DNS outage as temporary (exit 75), and an unknown target as a usage error', async () => {
    dns.behave('_dmarc.ok.example', 'servfail')
    const temp = await run(['verify', 'ok.example'], env)
    dns.behave('_dmarc.ok.example', undefined)
    assert.equal(temp.code, 75, temp.out)
    assert.match(temp.out, /TEMPERROR/)
    const unknown = await run(['verify', 'nobody.example'], env)
    assert.equal(unknown.code, 64)
    assert.match(unknown.err, /no live attestation for nobody\.example/)
    const adhoc = await run(['verify', 'ok.example', '--did', DID, '--selector', 'atmos1'], {
      ...env,
      ATMOS_DATABASE_URL: 'postgres://root@127.0.0.1:9/none',
    })
    assert.equal(adhoc.code, 0, adhoc.err)
  })

  it('declare prints the labeler service record and the DID document entries', async () => {
    const out = await run(['declare'], env)
    assert.equal(out.code, 0, out.err)
    assert.match(out.out, /"\$type": "app\.bsky\.labeler\.service"/)
    assert.match(out.out, /"identifier": "verified-mail-operator"/)
    assert.match(out.out, /"identifier": "relay-member"/)
    assert.match(out.out, /"serviceEndpoint": "https:\/\/labeler\.atmos\.example"/)
    assert.match(out.out, /"publicKeyMultibase": "zQ3s/)
  })

  it('declare --publish writes the record to the labeler account on its PDS', async () => {
    process.env.TMPDIR = mkdtempSync(join(tmpdir(), 'atmos-pds-'))
    const network = await TestNetworkNoAppView.create({})
    try {
      const agent = new AtpAgent({ service: network.pds.url })
      await agent.createAccount({ email: 'labeler@mail.test', handle: 'labeler.test', password: 'labeler secret pw' })
      const missingPassword = await run(
        ['declare', '--publish', '--pds', network.pds.url, '--identifier', 'labeler.test'],
        env,
      )
      assert.equal(missingPassword.code, 64)
      const published = await run(['declare', '--publish', '--pds', network.pds.url, '--identifier', 'labeler.test'], {
        ...env,
        ATMOS_LABELER_ACCOUNT_PASSWORD: 'labeler secret pw',
      })
      assert.equal(published.code, 0, published.err)
      assert.doesNotMatch(published.out + published.err, /labeler secret pw/)
      const rec = await agent.com.atproto.repo.getRecord({
        repo: agent.session!.did,
        collection: 'app.bsky.labeler.service',
        rkey: 'self',
      })
      const policies = (rec.data.value as { policies: { labelValues: string[] } }).policies
      assert.deepEqual(policies.labelValues, ['verified-mail-operator', 'relay-member', 'clean-sender'])
    } finally {
      await network.close()
    }
  })
})
