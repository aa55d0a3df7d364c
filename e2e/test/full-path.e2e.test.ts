import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { BrowserSteps, field, signInThroughPds } from '@atmos/admin/test-harness'
import { createPool, type Pool } from '@atmos/db'
import { arf, dsn } from '@atmos/fbl-ingest/reports'
import { headerBlock, headerValue, mxAddress, sendToMx } from '@atmos/fbl-ingest/test-harness'
import { eventually, LabelSubscriber, labelerEnv, queryLabels } from '@atmos/labeler/test-harness'
import { type SignedLabel, verifyLabel } from '@atmos/labels'
import { deliveryEnv } from '@atmos/relay/delivery-harness'
import {
  BOUNCE_DOMAIN,
  POOL_DOMAIN,
  refusal,
  relayFiles,
  runCli,
  submissionEnv,
  submitter,
} from '@atmos/relay/test-harness'
import { createKeyringFile } from '@atmos/secrets'
import {
  createTestDatabase,
  deletePrefix,
  MxSink,
  ServiceProcess,
  TEST_REDIS_URL,
  type TestDatabase,
  TestDnsServer,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { type Browser, launchBrowser, type Page } from '@atmos/testkit/browser'
import { AtpAgent } from '@atproto/api'
import { TestNetworkNoAppView } from '@atproto/dev-env'
import { dkimSign } from 'mailauth'
import { receiverVerdicts } from './receiver.ts'
import { parseZoneLine, zoneOf } from './zone-lines.ts'

// Issue 16's full path, with every service as its own OS process configured only through
// ATMOS_* variables, as deployed: a member signs in through a real PDS and enrols in the
// admin's wizard, the attestation lands in the PDS repo, the labeler (reading the PDS's
// firehose) labels the account, the member sends with its credentials on the relay's
// submission port, the relay delivers dual-signed to a loopback MX, a recipient bounces
// (refused at delivery) and another comes back later as a DSN to fbl-ingest's port 25, both
// suppressed; complaints (ARF) from a trusted feedback loop push the member past the
// threshold, fbl-ingest suspends it, the relay refuses it and the labeler negates
// relay-member on subscribeLabels. join.e2e.test.ts checks the pages themselves (axe,
// screenshots); this test is about the services talking to each other.

const HANDLE = 'alice.test'
const PASSWORD = 'correct horse battery'
const DOMAIN = 'alice-mail.example'
const RECEIVER = 'receiver.example'
const POOL_SPF = `_spf.${POOL_DOMAIN}`
/** The pool's inbound MX (fbl-ingest), which the wizard also proposes as the member domain's MX. */
const POOL_MX = `mx.${POOL_DOMAIN}`
/** MX hosts share one port on several loopback addresses, as on the internet they share 25. */
const SINK_HOST = '127.0.0.2'
const INBOUND_HOST = '127.0.0.3'
/**
 * A feedback-loop provider fbl-ingest trusts: its reports authenticate by SPF (they come from
 * loopback, which its record allows) or by its DKIM signature, whoever relays them.
 */
const FBL_PROVIDER_DOMAIN = 'arf.mail.yahoo.example'
const FBL_SELECTOR = 'fbl1'
/** Bound of every wait: generous, for five services, a PDS and chromium on a busy two-core machine. */
const WAIT = 60_000
/**
 * Bound of a process's start (its first listener, its "started"): a backstop, not a measure.
 * Five processes and a CLI load their modules at once, each seconds of CPU alone; on two
 * cores already running other tests, the last one to log can take over a minute.
 */
const START_WAIT = 180_000
const at = (local: string) => `${local}@${RECEIVER}`
/** What the services need from the world around them: PLC and PDS, DNS, a recipient's MX. */
type Network = {
  /** The temporary directory of everything the test and the services write (TMPDIR). */
  dir: string
  plcUrl: string
  pdsUrl: string
  dns: TestDnsServer
  /** The recipients' MX on SINK_HOST; `mxPort` is the port every MX host listens on. */
  sink: MxSink
  mxPort: number
  close: () => Promise<void>
}

/**
 * The peers the local network (tools/localnet, to come) will give the start command: a PLC
 * and PDS, an authoritative DNS server on loopback, and the recipients' MX. The recipients'
 * domain and MX are in the zone; the pool's records are the test's to publish.
 */
async function startNetwork(): Promise<Network> {
  // The PDS's blobs and the services' temporary files, apart from everything else.
  const dir = mkdtempSync(join(tmpdir(), 'atmos-full-path-'))
  process.env.TMPDIR = dir
  const sink = new MxSink({ name: RECEIVER, host: SINK_HOST })
  const dns = new TestDnsServer()
  const [pds, mxPort] = await Promise.all([TestNetworkNoAppView.create({}), sink.start(), dns.start()])
  dns.set(RECEIVER, { MX: [{ priority: 10, exchange: `mx.${RECEIVER}` }] })
  dns.set(`mx.${RECEIVER}`, { A: [SINK_HOST] })
  return {
    dir,
    plcUrl: pds.plc.url,
    pdsUrl: pds.pds.url,
    dns,
    sink,
    mxPort,
    close: async () => {
      await sink.close()
      await dns.close()
      await pds.close()
    },
  }
}

const providerKey = (() => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
  }
})()

/** A report with the feedback-loop provider's DKIM signature on top, as its reports come. */
async function signAsProvider(message: string): Promise<string> {
  const key = { signingDomain: FBL_PROVIDER_DOMAIN, selector: FBL_SELECTOR, privateKey: providerKey.privateKey }
  const { signatures, errors } = await dkimSign(message, {
    ...key,
    canonicalization: 'relaxed/relaxed',
    signatureData: [key],
  })
  if (!signatures) throw new Error(`not signed: ${JSON.stringify(errors)}`)
  return signatures + message
}

const entry = (pkg: string) => new URL('./index.ts', import.meta.resolve(pkg))

describe('the full path, every service its own process: enrol, send, bounce, complain, suspend', () => {
  const started = Date.now()
  let net: Network
  let did: string
  let tdb: TestDatabase
  let sql: Pool
  let prefix: string
  let labelerDid: string
  const procs: Record<string, ServiceProcess> = {}
  let labelerXrpc: string
  let submissionPort: number
  let adminUrl: string
  let labels: LabelSubscriber
  /** Started with everything else; closed in `after` whether or not the set-up got as far as using it. */
  let launching: Promise<Browser> | undefined
  let steps: BrowserSteps
  let page: Page
  let credentials: { host: string; port: number; username: string; password: string }
  /** The copies the sink accepted of the first message, by recipient. */
  const delivered: Record<string, { raw: string; mailFrom: string }> = {}
  /** The step (or the set-up) that failed: the rest are skipped, and the processes' logs printed. */
  let broken: string | undefined

  before(async () => {
    try {
      await setUp()
    } catch (err) {
      broken = 'set-up'
      throw err
    }
  })

  async function setUp() {
    const [network, database] = await Promise.all([startNetwork(), createTestDatabase()])
    net = network
    tdb = database
    sql = createPool({ url: tdb.url, poolMax: 2 })
    prefix = testRedisPrefix('full-path')
    launching = launchBrowser()
    const agent = new AtpAgent({ service: net.pdsUrl })
    await agent.createAccount({ email: 'alice@mail.test', handle: HANDLE, password: PASSWORD })
    did = agent.session!.did

    const { dns, mxPort } = net
    // The pool's zone: its SPF include, the MX of its own and bounce domains (fbl-ingest),
    // and the trusted feedback loop's SPF. The pool's DKIM key follows `relay keys init`.
    dns.set(POOL_SPF, { TXT: ['v=spf1 ip4:127.0.0.0/8 -all'] })
    for (const domain of [POOL_DOMAIN, BOUNCE_DOMAIN]) dns.set(domain, { MX: [{ priority: 10, exchange: POOL_MX }] })
    dns.set(POOL_MX, { A: [INBOUND_HOST] })
    dns.set(FBL_PROVIDER_DOMAIN, { TXT: ['v=spf1 ip4:127.0.0.0/8 -all'] })
    // A TXT character-string holds 255 bytes at most: a 2048-bit key takes two.
    const fblKey = `v=DKIM1; k=rsa; p=${providerKey.publicKey}`
    dns.set(`${FBL_SELECTOR}._domainkey.${FBL_PROVIDER_DOMAIN}`, { TXT: [fblKey.match(/.{1,255}/g)!] })

    // What every service shares, as deployed: one database, one Redis namespace.
    const shared = {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: prefix,
      ATMOS_HTTP_PORT: '0',
      // Info: the listeners' addresses are read from the logs.
      ATMOS_LOG_LEVEL: 'info',
    }
    const files = relayFiles()
    const labelerSetup = await labelerEnv({
      databaseUrl: tdb.url,
      jetstreamUrl: 'ws://127.0.0.1:9/unused',
      dnsPort: dns.port,
      plcUrl: net.plcUrl,
    })
    labelerDid = labelerSetup.didKey
    const labelerEnvVars = {
      ...labelerSetup.env,
      ...shared,
      ATMOS_LABELER_INGEST_SOURCE: 'firehose',
      ATMOS_LABELER_INGEST_FIREHOSE_URL: net.pdsUrl,
    }
    const relayEnv = {
      ...deliveryEnv({ databaseUrl: tdb.url, redisPrefix: prefix, dnsPort: dns.port, mxPort }),
      ...submissionEnv({ databaseUrl: tdb.url, redisPrefix: prefix, files }),
      ...shared,
      ATMOS_RELAY_ROLES: 'submission,delivery',
      // The relay trusts only this labeler's labels, as in production.
      ATMOS_RELAY_SUBMISSION_LABELER_DID: labelerDid,
    }
    const fblEnv = {
      ...shared,
      // The pool's identity as the relay has it: VERP tokens verify, the pool key signs forwards.
      ATMOS_FBL_INGEST_POOL_DOMAIN: POOL_DOMAIN,
      ATMOS_FBL_INGEST_POOL_BOUNCE_DOMAIN: BOUNCE_DOMAIN,
      ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE: files.tokenSecretFile,
      ATMOS_FBL_INGEST_POOL_KEK_FILE: files.poolKekFile,
      ATMOS_FBL_INGEST_SMTP_HOST: INBOUND_HOST,
      ATMOS_FBL_INGEST_SMTP_PORT: String(mxPort),
      ATMOS_FBL_INGEST_DNS_SERVERS: dns.address,
      ATMOS_FBL_INGEST_FEEDBACK_PROVIDERS: JSON.stringify([
        { name: 'yahoo', dkimDomains: [FBL_PROVIDER_DOMAIN], sendingDomains: [FBL_PROVIDER_DOMAIN] },
      ]),
      // Small enough for a handful of messages: 4 outcomes count, 1 complaint in 4 warns
      // and 2 suspend. Bounces never suspend here: two of five bounce on purpose.
      ATMOS_FBL_INGEST_THRESHOLDS_MIN_VOLUME: '4',
      ATMOS_FBL_INGEST_THRESHOLDS_COMPLAINT_WARN: '0.2',
      ATMOS_FBL_INGEST_THRESHOLDS_COMPLAINT_SUSPEND: '0.45',
      ATMOS_FBL_INGEST_THRESHOLDS_BOUNCE_WARN: '1',
      ATMOS_FBL_INGEST_THRESHOLDS_BOUNCE_SUSPEND: '1',
    }

    // Every process starts at once (each costs seconds of loading on this machine); the
    // admin waits only for the two addresses it is told.
    procs.labeler = new ServiceProcess(entry('@atmos/labeler'), labelerEnvVars)
    procs.relay = new ServiceProcess(entry('@atmos/relay'), relayEnv)
    procs.scheduler = new ServiceProcess(entry('@atmos/scheduler'), shared)
    procs['fbl-ingest'] = new ServiceProcess(entry('@atmos/fbl-ingest'), fblEnv)
    const [keys, xrpc, submission] = await Promise.all([
      // The operator's one-time command: the pool's DKIM key, published in the pool's zone.
      runCli(['keys', 'init'], relayEnv),
      procs.labeler.waitForLog((l) => l.msg === 'xrpc endpoint listening', START_WAIT),
      procs.relay.waitForLog((l) => l.msg === 'submission listening (STARTTLS)', START_WAIT),
    ])
    assert.equal(keys.code, 0, keys.err)
    const poolKey = /^(pool1\._domainkey\.\S+)\. IN TXT (.+)$/m.exec(keys.out)
    assert.ok(poolKey, `the pool key's record in:\n${keys.out}`)
    dns.set(poolKey[1]!, { TXT: [[...poolKey[2]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!)] })
    labelerXrpc = String(xrpc.xrpc)
    submissionPort = Number(String(submission.smtp).split(':').pop())

    const adminKek = join(mkdtempSync(join(tmpdir(), 'atmos-admin-')), 'kek')
    createKeyringFile(adminKek)
    procs.admin = new ServiceProcess(entry('@atmos/admin'), {
      ...shared,
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: adminKek,
      ATMOS_ADMIN_OAUTH_PLC_URL: net.plcUrl,
      ATMOS_ADMIN_OAUTH_HANDLE_RESOLVER: net.pdsUrl,
      ATMOS_ADMIN_OAUTH_ALLOW_HTTP: 'true',
      ATMOS_ADMIN_LABELER_URL: labelerXrpc,
      ATMOS_ADMIN_LABELER_DID: labelerDid,
      ATMOS_ADMIN_ENROLL_SPF_INCLUDE: POOL_SPF,
      ATMOS_ADMIN_ENROLL_MX_HOST: POOL_MX,
      ATMOS_ADMIN_ENROLL_DNS_SERVERS: '127.0.0.1',
      ATMOS_ADMIN_ENROLL_DNS_PORT: String(dns.port),
      ATMOS_ADMIN_ENROLL_DNS_TIMEOUT: '1s',
      ATMOS_ADMIN_ENROLL_DNS_TRIES: '1',
      ATMOS_ADMIN_ENROLL_PLC_URL: net.plcUrl,
      // The member's DKIM keys are sealed under the relay's KEK: the relay signs with them.
      ATMOS_ADMIN_ENROLL_KEK_FILE: files.kekFile,
      ATMOS_ADMIN_ENROLL_RELAY_HOST: '127.0.0.1',
      ATMOS_ADMIN_ENROLL_RELAY_PORT: String(submissionPort),
    })
    const web = await procs.admin.waitForLog((l) => l.msg === 'admin web endpoint listening', START_WAIT)
    adminUrl = String(web.web)
    await Promise.all(Object.values(procs).map((p) => p.waitForLog((l) => l.msg === 'started', START_WAIT)))
    await firehoseLive(sql, net.pdsUrl)

    labels = new LabelSubscriber(labelerXrpc, 0)
    await labels.opened()
    steps = new BrowserSteps(await launching, 'atmos-full-path-shots-')
    page = await steps.newPage()
    page.setDefaultTimeout(WAIT)
    console.log(`set-up: ${((Date.now() - started) / 1000).toFixed(1)} s`)
  }

  after(async () => {
    labels?.close()
    await (await launching?.catch(() => undefined))?.close()
    const stopped = await Promise.all(
      Object.entries(procs).map(async ([name, p]) => ({ name, p, exit: await p.stop() })),
    )
    if (broken) for (const { name, p } of stopped) console.log(`--- ${name} (${broken} failed)\n${tail(p)}`)
    await sql?.end({ timeout: 5 })
    const redis = testRedis()
    if (prefix) await deletePrefix(redis, prefix)
    redis.disconnect()
    await tdb?.drop()
    await net?.close()
    // Kept after a failure: the screenshot of the failed step, the services' files.
    if (broken) console.log(`kept ${net?.dir}`)
    else if (net) rmSync(net.dir, { recursive: true, force: true })
    console.log(`wall time: ${((Date.now() - started) / 1000).toFixed(1)} s`)
    for (const { name, exit } of stopped) assert.equal(exit.code, 0, `${name} stopped cleanly: ${JSON.stringify(exit)}`)
  })

  const labelValues = async () =>
    (await queryLabels(labelerXrpc, did))
      .filter((l) => l.src === labelerDid && !l.neg)
      .map((l) => l.val)
      .sort()

  /** Every relay-member frame subscribeLabels sent for the member, in order: whether it negates, and the label. */
  const relayMemberFrames = () =>
    labels
      .labels()
      .filter((l) => l.label.uri === did && l.label.val === 'relay-member')
      .map((l) => ({ seq: l.seq, neg: l.label.neg === true, label: l.label as unknown as SignedLabel }))

  async function member() {
    const [row] = await sql<{ id: number; status: string; statusReason: string | null }[]>`
      select id::int as id, status, status_reason as "statusReason" from members where did = ${did}`
    assert.ok(row, 'the member exists')
    return row
  }

  async function events(type: string, recipient: string) {
    const { id } = await member()
    return sql<
      {
        messageId: string
        source: string
        status: string | null
        feedbackType: string | null
        reporter: string | null
        reporterAuth: string | null
      }[]
    >`
      select message_id as "messageId", source, status, feedback_type as "feedbackType",
             details->>'reporter' as reporter, details->>'reporterAuth' as "reporterAuth"
      from feedback_events where member_id = ${id} and type = ${type} and recipient = ${recipient}`
  }

  async function suppression(address: string) {
    const { id } = await member()
    const [row] = await sql<{ reason: string; domain: string | null }[]>`
      select s.reason, d.domain from suppressions s left join domains d on d.id = s.domain_id
      where s.member_id = ${id} and s.address = ${address} and s.removed_at is null`
    return row
  }

  /** The spooled copy for one recipient and its state (the relay spools one message a recipient). */
  async function spooled(address: string) {
    const [row] = await sql<{ id: string; returnPath: string; state: string }[]>`
      select m.id, m.return_path as "returnPath", r.state
      from messages m join message_recipients r on r.message_id = m.id where r.address = ${address}`
    return row
  }

  /** Sends as the member with the credentials the page showed, on the relay's submission port. */
  async function submit(to: string[], subject: string) {
    const t = submitter(credentials.port, credentials.username, credentials.password, { host: credentials.host })
    try {
      return await t.sendMail({ from: `notify@${DOMAIN}`, to, subject, text: 'Your code is 123456\n' })
    } finally {
      t.close()
    }
  }

  /** Waits until the sink holds the copy for `address` and the relay recorded it delivered. */
  async function deliveredTo(address: string, subject: string) {
    const copy = await eventually(
      async () => net.sink.to(address).find((m) => headerValue(m.raw, 'Subject') === subject),
      WAIT,
      `delivery to ${address}`,
    )
    await eventually(
      async () => ((await spooled(address))?.state === 'delivered' ? true : undefined),
      WAIT,
      `the relay to record the delivery to ${address}`,
    )
    return copy
  }

  /** One step of the path: each needs the ones before it, so after a failure the rest are skipped. */
  const step = (name: string, fn: () => Promise<void>) =>
    it(name, async (t) => {
      if (broken) return t.skip(`"${broken}" failed`)
      try {
        await fn()
      } catch (err) {
        broken = name
        await steps?.shot(page, 'failed').catch(() => {})
        throw err
      }
    })

  step('runs each service as its own process, each ready on its ops port', async () => {
    for (const [name, p] of Object.entries(procs)) {
      assert.notEqual(p.child.pid, process.pid)
      const res = await fetch(`${await p.opsUrl()}/readyz`)
      assert.equal(res.status, 200, `${name} ready: ${await res.text()}`)
    }
  })

  step('signs in through the PDS and enrols the domain in the wizard until every check passes', async () => {
    await signInThroughPds(page, { adminUrl, pdsUrl: net.pdsUrl, handle: HANDLE, password: PASSWORD })
    assert.equal(new URL(page.url()).pathname, '/account')
    await page.getByRole('link', { name: 'Enrol a mail domain' }).click()
    await page.getByLabel('Mail domain').fill(DOMAIN)
    await page.getByRole('button', { name: 'Continue' }).click()
    await page.waitForURL(`${adminUrl}/enroll/${DOMAIN}`)
    // The member publishes the zone-file lines the page shows.
    const lines = (await page.locator('pre').allTextContents())
      .flatMap((t) => t.split('\n'))
      .filter((l) => / IN (TXT|MX) /.test(l))
    assert.equal(lines.length, 6, lines.join('\n'))
    for (const [name, records] of Object.entries(zoneOf(lines.map(parseZoneLine)))) net.dns.set(name, records)
    await page.getByRole('button', { name: 'Check now' }).click()
    await page.getByRole('button', { name: 'Publish the attestation' }).waitFor()
    assert.equal(await page.getByRole('cell', { name: 'fail', exact: true }).count(), 0)
  })

  step('publishes the attestation on the PDS; the labeler reads it off the firehose and labels', async () => {
    await page.getByRole('button', { name: 'Publish the attestation' }).click()
    await page.waitForURL(`${adminUrl}/enroll/${DOMAIN}/watch`)
    const { data } = await new AtpAgent({ service: net.pdsUrl }).com.atproto.repo.getRecord({
      repo: did,
      collection: 'email.atmos.attestation',
      rkey: DOMAIN,
    })
    assert.equal((data.value as { domain: string }).domain, DOMAIN)
    await eventually(
      async () => ((await labelValues()).includes('verified-mail-operator') ? true : undefined),
      WAIT,
      'verified-mail-operator from the labeler process',
    )
  })

  step('activates: relay-member follows on subscribeLabels, and the credentials are shown', async () => {
    await page.getByRole('button', { name: 'Activate the domain' }).click()
    await page.waitForURL(`${adminUrl}/enroll/${DOMAIN}/watch`)
    await eventually(
      async () => ((await labelValues()).includes('relay-member') ? true : undefined),
      WAIT,
      'relay-member from the labeler',
    )
    await eventually(async () => (relayMemberFrames().length ? true : undefined), WAIT, 'relay-member on the stream')
    assert.deepEqual(
      relayMemberFrames().map((f) => f.neg),
      [false],
    )
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/credentials')),
      page.getByRole('button', { name: 'Issue credentials' }).click(),
    ])
    await page.waitForLoadState()
    credentials = {
      host: await field(page, 'Host'),
      port: Number(await field(page, 'Port')),
      username: await field(page, 'Username'),
      password: await field(page, 'Password'),
    }
    assert.equal(credentials.username, DOMAIN)
    assert.equal(credentials.port, submissionPort, 'the page names the relay process’s submission port')
  })

  step('submits on the submission port; the sink receives it signed by the member and the pool', async () => {
    // bob's mailbox does not exist: the sink refuses him at RCPT, as a receiving MX would.
    net.sink.onRcpt = (to) =>
      to === at('bob') ? { code: 550, text: '5.1.1 <bob@receiver.example>: Recipient address rejected' } : undefined
    const subject = 'Your code'
    const sent = await submit([at('alice'), at('bob'), at('carol')], subject)
    assert.match(sent.response, /^250 /)
    assert.deepEqual([...sent.accepted].sort(), [at('alice'), at('bob'), at('carol')])
    for (const who of ['alice', 'carol']) delivered[who] = await deliveredTo(at(who), subject)
    const copy = net.sink.to(at('alice'))[0]!
    assert.equal(copy.secure, true, 'delivered over STARTTLS')
    const { signatures, dmarc } = await receiverVerdicts(Buffer.from(copy.raw), {
      ip: '127.0.0.1',
      helo: `relay.${POOL_DOMAIN}`,
      sender: copy.mailFrom,
      dnsAddress: net.dns.address,
    })
    assert.deepEqual(signatures, [
      [DOMAIN, 'ed25519-sha256', 'atmos1e', 'pass'],
      [DOMAIN, 'rsa-sha256', 'atmos1r', 'pass'],
      [POOL_DOMAIN, 'rsa-sha256', 'pool1', 'pass'],
    ])
    assert.equal(dmarc, 'pass')
  })

  step('a recipient refused at delivery (550 5.1.1) is a hard bounce of the member, suppressed', async () => {
    const bounced = await eventually(
      async () => {
        const row = await spooled(at('bob'))
        return row?.state === 'bounced' ? row : undefined
      },
      WAIT,
      'bob bounced',
    )
    const [event] = await eventually(
      async () => {
        const rows = await events('hard_bounce', at('bob'))
        return rows.length ? rows : undefined
      },
      WAIT,
      'the hard bounce event',
    )
    assert.deepEqual(event, {
      messageId: bounced.id,
      source: 'delivery',
      status: '5.1.1',
      feedbackType: null,
      reporter: null,
      reporterAuth: null,
    })
    assert.deepEqual(await suppression(at('bob')), { reason: 'hard_bounce', domain: DOMAIN })
    assert.equal(net.sink.to(at('bob')).length, 0)
  })

  step('a later DSN to the VERP return path, on fbl-ingest’s port 25, is attributed and suppressed', async () => {
    const copy = delivered.carol!
    const returnPath = copy.mailFrom
    assert.equal(returnPath, (await spooled(at('carol')))?.returnPath, 'the MX saw the VERP return path')
    // The recipient's MTA bounces to the envelope sender, wherever DNS sends the bounce domain's mail.
    const mx = await mxAddress(net.dns.address, returnPath.split('@')[1]!)
    assert.equal(mx, INBOUND_HOST)
    const reply = await sendToMx(
      { host: mx, port: net.mxPort },
      { from: '', to: [returnPath] },
      dsn({
        to: returnPath,
        recipient: at('carol'),
        status: '5.1.1',
        diagnostic: `550 5.1.1 <${at('carol')}>: mailbox unavailable`,
        returnedHeaders: headerBlock(copy.raw),
      }),
    )
    assert.match(reply, /^250 /)
    const [event] = await eventually(
      async () => {
        const rows = await events('hard_bounce', at('carol'))
        return rows.length ? rows : undefined
      },
      WAIT,
      'the DSN’s hard bounce event',
    )
    assert.deepEqual(event, {
      messageId: (await spooled(at('carol')))!.id,
      source: 'dsn',
      status: '5.1.1',
      feedbackType: null,
      reporter: null,
      reporterAuth: null,
    })
    assert.deepEqual(await suppression(at('carol')), { reason: 'hard_bounce', domain: DOMAIN })
    assert.equal(await suppression(at('alice')), undefined, 'alice was delivered and stays sendable')
  })

  step('the relay refuses a new submission to either suppressed address at RCPT', async () => {
    for (const who of ['bob', 'carol']) {
      const refused = await refusal(submit([at(who)], 'Another code'))
      assert.equal(refused.responseCode, 550, refused.message)
      assert.equal(refused.command, 'RCPT TO')
      assert.match(refused.response ?? '', /^550 5\.1\.\d .*suppression list/)
    }
    assert.equal(net.sink.to(at('carol')).length, 1, 'nothing more reached carol')
    assert.equal((await member()).status, 'active', 'bounces alone do not suspend here')
  })

  step('complaints from a trusted feedback loop past the threshold suspend the member', async () => {
    const subject = 'Your second code'
    const sent = await submit([at('dave'), at('erin')], subject)
    assert.deepEqual([...sent.accepted].sort(), [at('dave'), at('erin')])
    const copies = { dave: await deliveredTo(at('dave'), subject), erin: await deliveredTo(at('erin'), subject) }
    const fblMx = await mxAddress(net.dns.address, POOL_DOMAIN)
    /** The provider's report about `who`, from `sender`, DKIM-signed by the provider or not. */
    const complain = async (who: 'dave' | 'erin', sender: string, signed: boolean) => {
      const report = arf({
        to: `fbl@${POOL_DOMAIN}`,
        originalRcptTo: at(who),
        returnedHeaders: headerBlock(copies[who].raw),
      })
      const reply = await sendToMx(
        { host: fblMx, port: net.mxPort },
        { from: sender, to: [`fbl@${POOL_DOMAIN}`] },
        signed ? await signAsProvider(report) : report,
      )
      assert.match(reply, /^250 /)
      return eventually(
        async () => {
          const rows = await events('complaint', at(who))
          return rows.length ? rows[0] : undefined
        },
        WAIT,
        `the complaint about ${who}`,
      )
    }
    // The provider's own envelope sender, which SPF passes for the connecting address.
    const first = await complain('dave', `feedback@${FBL_PROVIDER_DOMAIN}`, false)
    assert.deepEqual(first, {
      messageId: (await spooled(at('dave')))!.id,
      source: 'arf',
      status: null,
      feedbackType: 'abuse',
      reporter: 'yahoo',
      reporterAuth: `spf ${FBL_PROVIDER_DOMAIN}`,
    })
    assert.equal((await suppression(at('dave')))?.reason, 'complaint')
    assert.equal((await member()).status, 'active', 'one complaint in four warns, no more')

    // Relayed by someone whose SPF says nothing: the provider's signature alone proves it.
    const second = await complain('erin', 'reports@forwarder.example', true)
    assert.equal(second.reporterAuth, `dkim ${FBL_PROVIDER_DOMAIN}`)
    const suspended = await eventually(
      async () => {
        const m = await member()
        return m.status === 'suspended' ? m : undefined
      },
      WAIT,
      'the suspension',
    )
    assert.match(suspended.statusReason ?? '', /complaint rate .* \(2 complaints, \d+ delivered\) reached the suspend/)
    const [change] = await sql<{ actor: string }[]>`
      select actor from member_status_changes where member_id = ${suspended.id} and to_status = 'suspended'`
    assert.equal(change?.actor, 'fbl-ingest')
  })

  step('relay-member is negated on subscribeLabels, and the relay refuses the member (550 5.7.1)', async () => {
    const frames = await eventually(
      async () => {
        const f = relayMemberFrames()
        return f.at(-1)?.neg ? f : undefined
      },
      WAIT,
      'relay-member negated in subscribeLabels',
    )
    assert.deepEqual(
      frames.map((f) => f.neg),
      [false, true],
    )
    assert.ok(frames[1]!.seq > frames[0]!.seq)
    // Signed by the labeler's key, the one the relay trusts.
    assert.equal(frames[1]!.label.src, labelerDid)
    assert.equal(await verifyLabel(frames[1]!.label, labelerDid), true, 'the negation verifies')
    assert.deepEqual(await labelValues(), ['verified-mail-operator'])
    const refused = await refusal(submit([at('frank')], 'A third code'))
    assert.equal(refused.responseCode, 550, refused.message)
    assert.equal(refused.command, 'MAIL FROM')
    // The refusal names the account and the reason the suspension was recorded with.
    const { statusReason } = await member()
    assert.ok(statusReason)
    assert.ok(
      (refused.response ?? '').startsWith(`550 5.7.1 ${did} is suspended from the relay: ${statusReason}`),
      refused.response,
    )
    assert.equal(net.sink.to(at('frank')).length, 0)
  })

  step('the member’s account shows the suspension, its reason, relay-member gone and the suppressions', async () => {
    await page.goto(`${adminUrl}/account`)
    const region = page.getByRole('region', { name: 'Labels' })
    assert.deepEqual(await region.getByRole('listitem').locator('code').allTextContents(), ['verified-mail-operator'])
    const status = (await page.getByTestId('status').textContent()) ?? ''
    assert.match(status, /^suspended \(complaint rate .* reached the suspend threshold/)
    assert.equal((await page.content()).includes(credentials.password), false)
    // The member's list: both bounced addresses and both complainants, each from the domain's mail.
    await page.goto(`${adminUrl}/account/suppressions`)
    const listed = await page.locator('tbody tr th[scope=row]').allTextContents()
    assert.deepEqual(listed.sort(), ['bob', 'carol', 'dave', 'erin'].map(at))
  })
})

/**
 * Waits until the labeler process reading `pdsUrl`'s firehose has taken an event (its cursor
 * is saved): a fresh subscription starts live, so what is written before it is up would be
 * missed. Each probe account emits events of its own; one every two seconds until one shows.
 */
async function firehoseLive(sql: Pool, pdsUrl: string): Promise<void> {
  const deadline = Date.now() + WAIT
  for (let n = 0; Date.now() < deadline; n++) {
    const handle = `probe${n}-${Math.random().toString(36).slice(2, 8)}.test`
    await new AtpAgent({ service: pdsUrl }).createAccount({ email: `${handle}@mail.test`, handle, password: PASSWORD })
    const seen = await eventually(
      async () => ((await sql`select 1 from ingest_cursors limit 1`).length ? true : undefined),
      2_000,
      'the ingest cursor',
    ).catch(() => undefined)
    if (seen) return
  }
  throw new Error(`the labeler's firehose subscription to ${pdsUrl} took no event in ${WAIT} ms`)
}

/** The last lines a process logged, for a failed run. */
function tail(p: ServiceProcess, n = 60): string {
  return p.dump().split('\n').slice(-n).join('\n')
}
