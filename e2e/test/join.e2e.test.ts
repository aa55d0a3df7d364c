import assert from 'node:assert/strict'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { AdminService } from '@atmos/admin'
import { adminConfigSchema } from '@atmos/admin/config'
import { BrowserSteps, field, signInThroughPds } from '@atmos/admin/test-harness'
import { loadConfig } from '@atmos/config'
import { createPool, type Pool } from '@atmos/db'
import { createDkimKey } from '@atmos/dkim'
import type { LabelerService } from '@atmos/labeler'
import { eventually, labelerEnv, queryLabels } from '@atmos/labeler/test-harness'
import { addToZone, type PublishedRecord, parseZoneLine } from '@atmos/localnet'
import { RelayService } from '@atmos/relay'
import { relayConfigSchema } from '@atmos/relay/config'
import { deliveryEnv } from '@atmos/relay/delivery-harness'
import { POOL_DOMAIN, poolPublicKey, relayFiles, submissionEnv, submitter } from '@atmos/relay/test-harness'
import { createKeyringFile, loadKeyring } from '@atmos/secrets'
import {
  createTestDatabase,
  deletePrefix,
  MxSink,
  TEST_REDIS_URL,
  type TestDatabase,
  TestDnsServer,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { type Browser, launchBrowser, type Page } from '@atmos/testkit/browser'
import { AtpAgent } from '@atproto/api'
import { TestNetworkNoAppView } from '@atproto/dev-env'
import { startFirehoseLabeler } from './firehose-labeler.ts'
import { receiverVerdicts } from './receiver.ts'

// Issue 15's path, as a person joins: in Debian's chromium, sign in on a real PDS's own
// sign-in and consent pages, enrol a domain in the admin's wizard, see its checks fail, publish
// the records the page shows into the loopback zone, see them pass, publish the attestation
// to the PDS repo, watch the labeler (reading the PDS's firehose) label the account, activate,
// take the SMTP credentials off the page and send with them through the relay, which delivers
// to a loopback MX with the member's and the pool's DKIM signatures. Every page of ours is
// checked by axe and for console errors, and each step is kept as a screenshot.

const HANDLE = 'alice.test'
const PASSWORD = 'correct horse battery'
const DOMAIN = 'alice-mail.example'
const RECEIVER = 'receiver.example'
const POOL_SPF = `_spf.${POOL_DOMAIN}`
const POOL_MX = `mx.${POOL_DOMAIN}`
const LOG_LEVEL = process.env.ATMOS_TEST_LOG ?? 'warn'
/** Bound of each wait on a page or a service: generous, for a busy two-core machine. */
const WAIT = 30_000
/** The OS's temporary directory, before the PDS's is set as TMPDIR: the screenshots go there. */
const OS_TMP = tmpdir()

describe('a PDS operator joins through the browser and sends through the relay', () => {
  const started = Date.now()
  let network: TestNetworkNoAppView
  let did: string
  let tdb: TestDatabase
  let sql: Pool
  let prefix: string
  let dns: TestDnsServer
  let sink: MxSink
  let relay: RelayService
  let labeler: LabelerService
  let labelerDid: string
  let admin: AdminService
  let adminUrl: string
  let browser: Browser
  let steps: BrowserSteps
  let page: Page
  /** What the records page asks to publish, read from its zone-file lines. */
  let published: PublishedRecord[] = []
  let credentials: { host: string; port: number; username: string; password: string }

  before(async () => {
    process.env.TMPDIR = mkdtempSync(join(tmpdir(), 'atmos-e2e-pds-'))
    network = await TestNetworkNoAppView.create({})
    const agent = new AtpAgent({ service: network.pds.url })
    await agent.createAccount({ email: 'alice@mail.test', handle: HANDLE, password: PASSWORD })
    did = agent.session!.did

    // One database and one Redis namespace for the three services, as they share them deployed.
    tdb = await createTestDatabase()
    sql = createPool({ url: tdb.url, poolMax: 4 })
    prefix = testRedisPrefix('join')

    sink = new MxSink({ name: RECEIVER })
    const mxPort = await sink.start()
    dns = new TestDnsServer()
    await dns.start()

    const files = relayFiles()
    await createDkimKey(sql, loadKeyring(files.poolKekFile), { memberId: null, domain: POOL_DOMAIN, selector: 'pool1' })
    // The pool's zone (its SPF include, its key, the reply MX it offers) and the recipients' MX.
    // The member's domain has no records at all yet.
    dns.zone = {
      [POOL_SPF]: { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
      [`pool1._domainkey.${POOL_DOMAIN}`]: { TXT: [`v=DKIM1; k=rsa; p=${await poolPublicKey(sql)}`] },
      [POOL_MX]: { A: ['127.0.0.1'] },
      [RECEIVER]: { MX: [{ priority: 10, exchange: `mx.${RECEIVER}` }] },
      [`mx.${RECEIVER}`]: { A: ['127.0.0.1'] },
    }

    const labelerSetup = await labelerEnv({
      databaseUrl: tdb.url,
      jetstreamUrl: 'ws://127.0.0.1:9/unused',
      dnsPort: dns.port,
      plcUrl: network.plc.url,
    })
    labelerDid = labelerSetup.didKey

    const relayEnv = {
      ...deliveryEnv({ databaseUrl: tdb.url, redisPrefix: prefix, dnsPort: dns.port, mxPort }),
      ...submissionEnv({ databaseUrl: tdb.url, redisPrefix: prefix, files }),
      ATMOS_LOG_LEVEL: LOG_LEVEL,
      ATMOS_RELAY_ROLES: 'submission,delivery',
      // The relay trusts only this labeler's labels, as in production.
      ATMOS_RELAY_SUBMISSION_LABELER_DID: labelerDid,
    }
    relay = await RelayService.create(loadConfig(relayConfigSchema, { env: relayEnv }))
    await relay.start()
    await relay.whenStarted()
    const submissionPort = relay.ctx.submission!.addresses.starttls!.port

    labeler = await startFirehoseLabeler({
      env: labelerSetup.env,
      databaseUrl: tdb.url,
      pdsUrl: network.pds.url,
      extra: { ATMOS_REDIS_PREFIX: prefix, ATMOS_LOG_LEVEL: LOG_LEVEL },
    })

    const adminDir = mkdtempSync(join(tmpdir(), 'atmos-admin-'))
    createKeyringFile(join(adminDir, 'kek'))
    admin = await AdminService.create(
      loadConfig(adminConfigSchema, {
        env: {
          ATMOS_DATABASE_URL: tdb.url,
          ATMOS_REDIS_URL: TEST_REDIS_URL,
          ATMOS_REDIS_PREFIX: prefix,
          ATMOS_LOG_LEVEL: LOG_LEVEL,
          ATMOS_HTTP_PORT: '0',
          ATMOS_ADMIN_WEB_PORT: '0',
          ATMOS_ADMIN_KEK_FILE: join(adminDir, 'kek'),
          ATMOS_ADMIN_OAUTH_PLC_URL: network.plc.url,
          ATMOS_ADMIN_OAUTH_HANDLE_RESOLVER: network.pds.url,
          ATMOS_ADMIN_OAUTH_ALLOW_HTTP: 'true',
          ATMOS_ADMIN_LABELER_URL: labeler.xrpcUrl!,
          ATMOS_ADMIN_LABELER_DID: labelerDid,
          // The wizard: the same loopback DNS and PLC as the labeler, the relay's key file and port.
          ATMOS_ADMIN_ENROLL_SPF_INCLUDE: POOL_SPF,
          ATMOS_ADMIN_ENROLL_MX_HOST: POOL_MX,
          ATMOS_ADMIN_ENROLL_DNS_SERVERS: '127.0.0.1',
          ATMOS_ADMIN_ENROLL_DNS_PORT: String(dns.port),
          ATMOS_ADMIN_ENROLL_DNS_TIMEOUT: '1s',
          ATMOS_ADMIN_ENROLL_DNS_TRIES: '1',
          ATMOS_ADMIN_ENROLL_PLC_URL: network.plc.url,
          ATMOS_ADMIN_ENROLL_KEK_FILE: files.kekFile,
          ATMOS_ADMIN_ENROLL_RELAY_HOST: '127.0.0.1',
          ATMOS_ADMIN_ENROLL_RELAY_PORT: String(submissionPort),
        },
      }),
    )
    await admin.start()
    await admin.whenStarted()
    adminUrl = admin.webUrl!

    browser = await launchBrowser()
    steps = new BrowserSteps(browser, join(OS_TMP, 'atmos-join-shots-'))
    page = await steps.newPage()
    page.setDefaultTimeout(WAIT)
  })

  after(async () => {
    console.log(`screenshots: ${steps?.dir}`)
    console.log(`wall time: ${((Date.now() - started) / 1000).toFixed(1)} s`)
    await browser?.close()
    await admin?.destroy()
    await labeler?.destroy()
    await relay?.destroy()
    await sink?.close()
    await dns?.close()
    await sql?.end({ timeout: 5 })
    const redis = testRedis()
    await deletePrefix(redis, prefix)
    redis.disconnect()
    await tdb?.drop()
    await network?.close()
  })

  const labelValues = async () =>
    (await queryLabels(labeler.xrpcUrl!, did))
      .filter((l) => l.src === labelerDid && !l.neg)
      .map((l) => l.val)
      .sort()

  const heading = () => page.getByRole('heading', { level: 1 })

  /** The labels the wizard's labels page lists under its heading (it rewrites the list as it polls). */
  const pageLabels = async () =>
    (
      await page
        .locator('section', { has: page.getByRole('heading', { name: 'Labels on your account' }) })
        .getByRole('listitem')
        .locator('strong')
        .allTextContents()
    ).sort()

  /** One step of the path: each needs the ones before it, so after a failure the rest are skipped, not waited out. */
  let broken: string | undefined
  const step = (name: string, fn: () => Promise<void>) =>
    it(name, async (t) => {
      if (broken) return t.skip(`"${broken}" failed`)
      try {
        await fn()
      } catch (err) {
        broken = name
        // What the browser showed when the step failed, beside the steps' screenshots.
        await steps.shot(page, 'failed').catch(() => {})
        throw err
      }
    })

  step('signs in on the PDS’s own sign-in and consent pages and lands on the account page', async () => {
    await page.goto(`${adminUrl}/`)
    await steps.check(page, 'signin')
    await signInThroughPds(page, { adminUrl, pdsUrl: network.pds.url, handle: HANDLE, password: PASSWORD, steps })
    assert.equal(new URL(page.url()).pathname, '/account')
    await steps.check(page, 'account')
  })

  step('enrols the domain and shows every record to publish, with its zone-file line', async () => {
    await page.getByRole('link', { name: 'Enrol a mail domain' }).click()
    await page.waitForURL(`${adminUrl}/enroll`)
    await steps.check(page, 'enroll')
    await page.getByLabel('Mail domain').fill(DOMAIN)
    await page.getByRole('button', { name: 'Continue' }).click()
    await page.waitForURL(`${adminUrl}/enroll/${DOMAIN}`)
    await steps.check(page, 'records')
    // Every zone-file line the page shows, as a member would copy them into their zone.
    const lines = (await page.locator('pre').allTextContents())
      .flatMap((t) => t.split('\n'))
      .filter((l) => / IN (TXT|MX) /.test(l))
    published = lines.map(parseZoneLine)
    assert.deepEqual(published.map((r) => `${r.name} ${r.type}`).sort(), [
      `_atproto.${DOMAIN} TXT`,
      `_dmarc.${DOMAIN} TXT`,
      `${DOMAIN} MX`,
      `${DOMAIN} TXT`,
      `atmos1e._domainkey.${DOMAIN} TXT`,
      `atmos1r._domainkey.${DOMAIN} TXT`,
    ])
  })

  step('check now fails while the domain has no records', async () => {
    await page.getByRole('button', { name: 'Check now' }).click()
    await heading()
      .filter({ hasText: `Check of ${DOMAIN}` })
      .waitFor()
    // Nothing is published yet: each of the five checks fails (none says "try again").
    assert.equal(await page.getByRole('cell', { name: 'fail', exact: true }).count(), 5)
    assert.equal(await page.getByRole('button', { name: 'Publish the attestation' }).count(), 0)
    await steps.check(page, 'check-fails')
  })

  step('passes once the records the page showed are in the zone', async () => {
    for (const [name, records] of Object.entries(addToZone({}, published))) dns.set(name, records)
    await page.getByRole('button', { name: 'Check again' }).click()
    await page.getByRole('button', { name: 'Publish the attestation' }).waitFor()
    assert.equal(await page.getByRole('cell', { name: 'fail', exact: true }).count(), 0)
    assert.equal(await page.getByRole('cell', { name: 'try again', exact: true }).count(), 0)
    assert.ok((await page.getByRole('cell', { name: 'pass', exact: true }).count()) >= 5, 'every check passes')
    await steps.check(page, 'check-passes')
  })

  step('publishes the attestation into the PDS repo under the domain', async () => {
    await page.getByRole('button', { name: 'Publish the attestation' }).click()
    await page.waitForURL(`${adminUrl}/enroll/${DOMAIN}/watch`)
    await steps.check(page, 'published')
    const { data } = await new AtpAgent({ service: network.pds.url }).com.atproto.repo.getRecord({
      repo: did,
      collection: 'email.atmos.attestation',
      rkey: DOMAIN,
    })
    const record = data.value as { domain: string; relayMember: boolean; dkimSelectors: string[] }
    assert.equal(record.domain, DOMAIN)
    assert.equal(record.relayMember, true)
    assert.deepEqual(record.dkimSelectors, ['atmos1r', 'atmos1e'])
    assert.ok((await page.locator('main').textContent())?.includes(data.uri), `the page names ${data.uri}`)
  })

  step('the labeler reads it from the firehose: the label appears in queryLabels and on the page', async () => {
    await eventually(
      async () => ((await labelValues()).includes('verified-mail-operator') ? true : undefined),
      WAIT,
      'verified-mail-operator from the labeler',
    )
    // The page polls the labeler itself and offers activation once the label is there.
    await page.getByRole('button', { name: 'Activate the domain' }).waitFor()
    assert.deepEqual(await pageLabels(), ['verified-mail-operator'])
    await steps.check(page, 'labels-verified')
  })

  step('activates the domain: relay-member follows, and the SMTP credentials are shown once', async () => {
    await page.getByRole('button', { name: 'Activate the domain' }).click()
    await page.waitForURL(`${adminUrl}/enroll/${DOMAIN}/watch`)
    // Activation tells the labeler (member-status-changed), which adds relay-member.
    await eventually(
      async () => ((await labelValues()).includes('relay-member') ? true : undefined),
      WAIT,
      'relay-member from the labeler',
    )
    assert.deepEqual(await labelValues(), ['relay-member', 'verified-mail-operator'])
    await eventually(
      async () => ((await pageLabels()).length === 2 ? true : undefined),
      WAIT,
      'both labels on the page',
    )
    assert.deepEqual(await pageLabels(), ['relay-member', 'verified-mail-operator'])
    await steps.check(page, 'labels-member')
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/credentials')),
      page.getByRole('button', { name: 'Issue credentials' }).click(),
    ])
    await page.waitForLoadState()
    const password = await field(page, 'Password')
    credentials = {
      host: await field(page, 'Host'),
      port: Number(await field(page, 'Port')),
      username: await field(page, 'Username'),
      password,
    }
    assert.equal(credentials.username, DOMAIN)
    assert.ok(credentials.password.length >= 16, 'a long random password')
    assert.equal(credentials.port, relay.ctx.submission!.addresses.starttls!.port)
    await steps.check(page, 'credentials')
  })

  step('sends with them through the relay: the MX receives mail the member’s keys and the pool’s sign', async () => {
    const from = `notify@${DOMAIN}`
    const to = `someone@${RECEIVER}`
    const transport = submitter(credentials.port, credentials.username, credentials.password, {
      host: credentials.host,
    })
    try {
      await transport.sendMail({ from, to, subject: 'Your code', text: 'Your code is 123456\n' })
    } finally {
      transport.close()
    }
    assert.ok(await sink.reach(1, WAIT), 'the recipient’s MX received the message')
    const [message] = sink.to(to)
    assert.ok(message, `a message to ${to}`)
    assert.equal(message.secure, true, 'the relay delivered over STARTTLS')
    const { signatures, dmarc } = await receiverVerdicts(Buffer.from(message.raw), {
      ip: '127.0.0.1',
      helo: 'relay.pool.example',
      sender: message.mailFrom,
      dnsAddress: dns.address,
    })
    assert.deepEqual(signatures, [
      [DOMAIN, 'ed25519-sha256', 'atmos1e', 'pass'],
      [DOMAIN, 'rsa-sha256', 'atmos1r', 'pass'],
      [POOL_DOMAIN, 'rsa-sha256', 'pool1', 'pass'],
    ])
    assert.equal(dmarc, 'pass')
  })

  step('the account page shows both labels and the message, and never the password again', async () => {
    await page.goto(`${adminUrl}/account`)
    const labels = page.getByRole('region', { name: 'Labels' })
    assert.deepEqual((await labels.getByRole('listitem').locator('code').allTextContents()).sort(), [
      'relay-member',
      'verified-mail-operator',
    ])
    assert.equal((await page.content()).includes(credentials.password), false)
    await steps.check(page, 'account-member')
    await page.goto(`${adminUrl}/account/messages`)
    const log = page.getByRole('region', { name: 'Message log' })
    assert.ok((await log.textContent())?.includes(`someone@${RECEIVER}`), 'the message is in the log')
    assert.equal((await page.content()).includes(credentials.password), false)
    await steps.check(page, 'message-log')
  })

  step('wrote each step the member took to the audit log, as the member and from where', async () => {
    const rows = await sql<{ actor: string; action: string; domain: string | null; detail: unknown }[]>`
      select actor, action, domain, detail from audit_log where did = ${did} order by id`
    assert.deepEqual(
      rows.filter((r) => r.actor !== `admin:${did}` || (r.detail as { ip?: string }).ip !== '127.0.0.1'),
      [],
      'every row names the member and the address the request came from',
    )
    const actions = rows.map((r) => r.action)
    for (const action of [
      'web.signin',
      'domain.added',
      'attestation.published',
      'domain.activated',
      'member.activated',
      'credential.rotated',
    ]) {
      assert.ok(actions.includes(action), `${action} in ${actions.join(', ')}`)
    }
  })

  it('logged no console error on any page', () => {
    assert.deepEqual(steps.errorsSoFar(), [])
  })
})
