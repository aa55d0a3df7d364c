import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { BrowserSteps, field, signInThroughPds } from '@atmos/admin/test-harness'
import { createPool, type Pool, quoteIdent } from '@atmos/db'
import { arf } from '@atmos/fbl-ingest/reports'
import { headerBlock, headerValue, mxAddress, sendToMx } from '@atmos/fbl-ingest/test-harness'
import { eventually, LabelSubscriber, labelerEnv, queryLabels } from '@atmos/labeler/test-harness'
import { type SignedLabel, verifyLabel } from '@atmos/labels'
import {
  freePort,
  LocalNetwork,
  type NetworkInfo,
  plcDatabaseUrl,
  SINK_DOMAIN,
  SINK_PROVIDER,
  type SinkEntry,
  serviceDefaults,
} from '@atmos/localnet'
import { deliveryEnv } from '@atmos/relay/delivery-harness'
import {
  BOUNCE_DOMAIN,
  dnsResolverFor,
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
  ServiceProcess,
  TEST_REDIS_URL,
  type TestDatabase,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { type Browser, launchBrowser, type Page } from '@atmos/testkit/browser'
import { AtpAgent } from '@atproto/api'
import { authenticate, dkimSign } from 'mailauth'
import { receiverVerdicts } from './receiver.ts'

// Issue 16's full path on the local network a newcomer gets from ./scripts/start.sh
// (tools/localnet: PLC and PDS, authoritative DNS, the sink MX and its controls), with every
// service as its own OS process configured only through ATMOS_* variables, the network's
// ones derived exactly as the stack derives them (serviceDefaults): a member signs in
// through the network's PDS and enrols in the admin's wizard, publishing the wizard's
// records through the network's DNS API; the attestation lands in the PDS repo, the labeler
// (reading the PDS's firehose) labels the account, the member sends with its credentials on
// the relay's submission port, the relay delivers dual-signed to the sink, the sink's
// next-reply control refuses a recipient (550 5.1.1) and its bounce button sends a late DSN
// to fbl-ingest, both suppressed; complaints (the sink's button, as the trusted provider
// `localnet-sink`, and two of another provider's) push the member past the threshold,
// fbl-ingest suspends it, the relay refuses it and the labeler negates relay-member on
// subscribeLabels; at last a reply to the member's domain, whose MX it points at the pool, reaches
// the forward-to it set in its account ARC-sealed by the pool. join.e2e.test.ts checks the pages themselves (axe, screenshots); this
// test is about the services talking to each other.

const HANDLE = 'alice.test'
const PASSWORD = 'correct horse battery'
const DOMAIN = 'alice-mail.example'
/** Any domain but the network's own is the sink's: its DNS answers every other name's MX with the sink. */
const RECEIVER = 'receiver.example'
/** The pool's inbound MX (fbl-ingest) on the local network: `mx.<pool>` is 127.0.0.1 in its zone. */
const INBOUND_HOST = '127.0.0.1'
/**
 * A second feedback-loop provider, the test's own, for what the sink's complaint button cannot
 * show: the sink always signs its reports and sends them itself from an address its SPF
 * allows, and fbl-ingest prefers the DKIM signature, so a report authenticated by SPF alone,
 * or by the provider's signature alone on a forwarder's envelope, has to come from elsewhere.
 * Its records are published through the network's DNS API like the member's.
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

/** A message the sink kept, with its bytes. */
type Kept = SinkEntry & { raw: string }

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
  /** The temporary directory of everything the test, the network and the services write (TMPDIR). */
  let dir: string | undefined
  let network: LocalNetwork | undefined
  let info: NetworkInfo
  let plcDatabase: string | undefined
  /** fbl-ingest's inbound SMTP port, which the network must know before it starts (its buttons send there). */
  let inboundPort: number
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
  const delivered: Record<string, Kept> = {}
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
    // The PDS's blobs, the network's state and the services' temporary files, apart from everything else.
    dir = mkdtempSync(join(tmpdir(), 'atmos-full-path-'))
    process.env.TMPDIR = dir
    launching = launchBrowser()
    tdb = await createTestDatabase()
    sql = createPool({ url: tdb.url, poolMax: 2 })
    prefix = testRedisPrefix('full-path')
    const files = relayFiles()
    const base = {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: prefix,
      ATMOS_HTTP_PORT: '0',
      // Info: the listeners' addresses are read from the logs.
      ATMOS_LOG_LEVEL: 'info',
    }
    // The operator's one-time command, before the network as under the stack: the network's
    // zone publishes the pool's DKIM key from the database, where `relay keys init` puts it.
    const keys = await runCli(['keys', 'init'], {
      ...submissionEnv({ databaseUrl: tdb.url, redisPrefix: prefix, files }),
      ...base,
    })
    assert.equal(keys.code, 0, keys.err)
    const poolKey = /^(pool1\._domainkey\.\S+)\. IN TXT (.+)$/m.exec(keys.out)
    assert.ok(poolKey, `the pool key's record in:\n${keys.out}`)

    inboundPort = await freePort()
    plcDatabase = plcDatabaseUrl(tdb.url)
    network = new LocalNetwork({
      stateDir: join(dir, 'localnet'),
      plcDatabaseUrl: plcDatabase,
      databaseUrl: tdb.url,
      pool: { domain: POOL_DOMAIN, bounceDomain: BOUNCE_DOMAIN },
      inbound: { host: INBOUND_HOST, port: inboundPort },
    })
    info = await network.start()
    const zone = await api<{ builtIn: string[] }>('GET', '/api/dns')
    assert.ok(
      zone.builtIn.some((l) => l.startsWith(`${poolKey[1]}. IN TXT `)),
      `the network serves the pool's key:\n${zone.builtIn.join('\n')}`,
    )
    const agent = new AtpAgent({ service: info.pdsUrl })
    await agent.createAccount({ email: 'alice@mail.test', handle: HANDLE, password: PASSWORD })
    did = agent.session!.did

    // The other provider's SPF (loopback) and DKIM key, published as zone-file lines. A TXT
    // character-string holds 255 bytes at most: a 2048-bit key takes two.
    const fblKey = `v=DKIM1; k=rsa; p=${providerKey.publicKey}`
    await api('POST', '/api/dns', {
      lines: [
        `${FBL_PROVIDER_DOMAIN}. IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
        `${FBL_SELECTOR}._domainkey.${FBL_PROVIDER_DOMAIN}. IN TXT ${fblKey
          .match(/.{1,255}/g)!
          .map((c) => `"${c}"`)
          .join(' ')}`,
      ],
    })

    // What every service shares, as deployed: one database, one Redis namespace, and what the
    // stack gives every service to reach the local network (firehose, DNS, PLC, sink, provider).
    const shared = {
      ...serviceDefaults({
        plcUrl: info.plcUrl,
        pdsUrl: info.pdsUrl,
        dnsPort: info.dns.port,
        sinkPort: info.sink.port,
        poolDomain: POOL_DOMAIN,
      }),
      ...base,
    }
    const labelerSetup = await labelerEnv({
      databaseUrl: tdb.url,
      jetstreamUrl: 'ws://127.0.0.1:9/unused',
      dnsPort: info.dns.port,
      plcUrl: info.plcUrl,
    })
    labelerDid = labelerSetup.didKey
    const labelerEnvVars = { ...labelerSetup.env, ...shared }
    const relayEnv = {
      ...deliveryEnv({ databaseUrl: tdb.url, redisPrefix: prefix, dnsPort: info.dns.port, mxPort: info.sink.port }),
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
      ATMOS_FBL_INGEST_SMTP_PORT: String(inboundPort),
      // The sink, as the stack trusts it, and the test's own provider.
      ATMOS_FBL_INGEST_FEEDBACK_PROVIDERS: JSON.stringify([
        SINK_PROVIDER,
        { name: 'yahoo', dkimDomains: [FBL_PROVIDER_DOMAIN], sendingDomains: [FBL_PROVIDER_DOMAIN] },
      ]),
      // Small enough for a handful of messages: 4 outcomes count; of 5 delivered (4 when the
      // late DSN counts as a bounce) 1 complaint warns, 2 do no more, 3 suspend. Bounces
      // never suspend here: two of seven recipients bounce on purpose.
      ATMOS_FBL_INGEST_THRESHOLDS_MIN_VOLUME: '4',
      ATMOS_FBL_INGEST_THRESHOLDS_COMPLAINT_WARN: '0.2',
      ATMOS_FBL_INGEST_THRESHOLDS_COMPLAINT_SUSPEND: '0.55',
      ATMOS_FBL_INGEST_THRESHOLDS_BOUNCE_WARN: '1',
      ATMOS_FBL_INGEST_THRESHOLDS_BOUNCE_SUSPEND: '1',
    }

    // Every process starts at once (each costs seconds of loading on this machine); the
    // admin waits only for the two addresses it is told.
    procs.labeler = new ServiceProcess(entry('@atmos/labeler'), labelerEnvVars)
    procs.relay = new ServiceProcess(entry('@atmos/relay'), relayEnv)
    procs.scheduler = new ServiceProcess(entry('@atmos/scheduler'), shared)
    procs['fbl-ingest'] = new ServiceProcess(entry('@atmos/fbl-ingest'), fblEnv)
    const [xrpc, submission] = await Promise.all([
      procs.labeler.waitForLog((l) => l.msg === 'xrpc endpoint listening', START_WAIT),
      procs.relay.waitForLog((l) => l.msg === 'submission listening (STARTTLS)', START_WAIT),
    ])
    labelerXrpc = String(xrpc.xrpc)
    submissionPort = Number(String(submission.smtp).split(':').pop())

    const adminKek = join(mkdtempSync(join(tmpdir(), 'atmos-admin-')), 'kek')
    createKeyringFile(adminKek)
    procs.admin = new ServiceProcess(entry('@atmos/admin'), {
      ...shared,
      ATMOS_ADMIN_WEB_PORT: '0',
      ATMOS_ADMIN_KEK_FILE: adminKek,
      ATMOS_ADMIN_LABELER_URL: labelerXrpc,
      ATMOS_ADMIN_LABELER_DID: labelerDid,
      ATMOS_ADMIN_ENROLL_DNS_TIMEOUT: '1s',
      ATMOS_ADMIN_ENROLL_DNS_TRIES: '1',
      // The member's DKIM keys are sealed under the relay's KEK: the relay signs with them.
      ATMOS_ADMIN_ENROLL_KEK_FILE: files.kekFile,
      ATMOS_ADMIN_ENROLL_RELAY_HOST: '127.0.0.1',
      ATMOS_ADMIN_ENROLL_RELAY_PORT: String(submissionPort),
    })
    const web = await procs.admin.waitForLog((l) => l.msg === 'admin web endpoint listening', START_WAIT)
    adminUrl = String(web.web)
    await Promise.all(Object.values(procs).map((p) => p.waitForLog((l) => l.msg === 'started', START_WAIT)))
    await firehoseLive(sql, info.pdsUrl)

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
    await network?.stop()
    if (plcDatabase) await dropDatabase(tdb.url, plcDatabase)
    await tdb?.drop()
    // Kept after a failure: the screenshot of the failed step, the network's and the services' files.
    if (broken) console.log(`kept ${dir}`)
    else if (dir) rmSync(dir, { recursive: true, force: true })
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

  /** The network's JSON API, as its CLI and pages use it; anything but 200 fails the step. */
  async function api<T = Record<string, unknown>>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${info.webUrl}${path}`, {
      method,
      ...(method === 'POST'
        ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) }
        : {}),
    })
    const text = await res.text()
    assert.equal(res.status, 200, `${method} ${path}: ${text}`)
    return JSON.parse(text) as T
  }

  /** What the sink kept for `address`, newest first (the relay delivers one recipient a transaction). */
  function kept(address: string): Kept[] {
    const sink = network!.sink!
    return sink
      .list()
      .filter((e) => e.rcptTo.includes(address))
      .map((e) => ({ ...e, raw: sink.raw(e.id)!.toString('utf8') }))
  }

  /** Waits until the sink holds the copy for `address` and the relay recorded it delivered. */
  async function deliveredTo(address: string, subject: string) {
    const copy = await eventually(
      async () => kept(address).find((m) => headerValue(m.raw, 'Subject') === subject),
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
    await signInThroughPds(page, { adminUrl, pdsUrl: info.pdsUrl, handle: HANDLE, password: PASSWORD })
    assert.equal(new URL(page.url()).pathname, '/account')
    await page.getByRole('link', { name: 'Enrol a mail domain' }).click()
    await page.getByLabel('Mail domain').fill(DOMAIN)
    await page.getByRole('button', { name: 'Continue' }).click()
    await page.waitForURL(`${adminUrl}/enroll/${DOMAIN}`)
    // The member publishes the zone-file lines the page shows through the network's DNS API,
    // as `localnet dns publish` does.
    const lines = (await page.locator('pre').allTextContents())
      .flatMap((t) => t.split('\n'))
      .filter((l) => / IN (TXT|MX) /.test(l))
    assert.equal(lines.length, 6, lines.join('\n'))
    assert.deepEqual(await api('POST', '/api/dns', { lines }), { added: 6 })
    await page.getByRole('button', { name: 'Check now' }).click()
    await page.getByRole('button', { name: 'Publish the attestation' }).waitFor()
    assert.equal(await page.getByRole('cell', { name: 'fail', exact: true }).count(), 0)
  })

  step('publishes the attestation on the PDS; the labeler reads it off the firehose and labels', async () => {
    await page.getByRole('button', { name: 'Publish the attestation' }).click()
    await page.waitForURL(`${adminUrl}/enroll/${DOMAIN}/watch`)
    const { data } = await new AtpAgent({ service: info.pdsUrl }).com.atproto.repo.getRecord({
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
    // bob's mailbox does not exist: the sink's next-reply control refuses him at RCPT, as a
    // receiving MX would. The relay delivers each recipient in a transaction of its own, in no
    // set order, and the control answers whichever RCPT comes next: bob is sent to alone first.
    assert.deepEqual(await api('POST', '/api/sink/next', { reply: 'hard' }), { nextReply: 'hard' })
    const subject = 'Your code'
    const toBob = await submit([at('bob')], subject)
    assert.match(toBob.response, /^250 /)
    assert.deepEqual([...toBob.accepted], [at('bob')])
    await eventually(
      async () => ((await spooled(at('bob')))?.state === 'bounced' ? true : undefined),
      WAIT,
      'bob refused by the sink',
    )
    assert.equal((await api<{ nextReply: string | null }>('GET', '/api/sink')).nextReply, null, 'spent on bob')
    const sent = await submit([at('alice'), at('carol')], subject)
    assert.match(sent.response, /^250 /)
    assert.deepEqual([...sent.accepted].sort(), [at('alice'), at('carol')])
    for (const who of ['alice', 'carol']) delivered[who] = await deliveredTo(at(who), subject)
    const copy = kept(at('alice'))[0]!
    assert.equal(copy.secure, true, 'delivered over STARTTLS')
    const { signatures, dmarc } = await receiverVerdicts(Buffer.from(copy.raw), {
      ip: '127.0.0.1',
      helo: `relay.${POOL_DOMAIN}`,
      sender: copy.mailFrom,
      dnsAddress: network!.dns!.address,
    })
    assert.deepEqual(signatures, [
      [DOMAIN, 'ed25519-sha256', 'atmos1e', 'pass'],
      [DOMAIN, 'rsa-sha256', 'atmos1r', 'pass'],
      [POOL_DOMAIN, 'rsa-sha256', 'pool1', 'pass'],
    ])
    assert.equal(dmarc, 'pass')
    // The sink's page shows a newcomer the same verdicts.
    const shown = copy.verdicts.dkim.map((d) => [d.domain, d.algorithm, d.selector, d.result])
    assert.deepEqual(shown.sort(), [...signatures].sort())
    assert.equal(copy.verdicts.dmarc.result, 'pass')
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
    assert.equal(kept(at('bob')).length, 0)
  })

  step(
    'a later DSN from the sink’s bounce button to the VERP return path, on fbl-ingest’s inbound port, is attributed and suppressed',
    async () => {
      const copy = delivered.carol!
      const returnPath = copy.mailFrom
      assert.equal(returnPath, (await spooled(at('carol')))?.returnPath, 'the MX saw the VERP return path')
      // The recipient's MTA bounces to the envelope sender, wherever DNS sends the bounce
      // domain's mail: fbl-ingest's host. The sink's bounce button sends it there.
      const mx = await mxAddress(network!.dns!.address, returnPath.split('@')[1]!)
      assert.equal(mx, INBOUND_HOST)
      const { reply } = await api<{ reply: string }>('POST', `/api/sink/${copy.id}/bounce`)
      assert.match(reply, /^250 /)
      assert.deepEqual(
        network!.sink!.get(copy.id)?.feedback.map((f) => [f.kind, f.to]),
        [['bounce', returnPath]],
      )
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
    },
  )

  step('the relay refuses a new submission to either suppressed address at RCPT', async () => {
    for (const who of ['bob', 'carol']) {
      const refused = await refusal(submit([at(who)], 'Another code'))
      assert.equal(refused.responseCode, 550, refused.message)
      assert.equal(refused.command, 'RCPT TO')
      assert.match(refused.response ?? '', /^550 5\.1\.\d .*suppression list/)
    }
    assert.equal(kept(at('carol')).length, 1, 'nothing more reached carol')
    assert.equal((await member()).status, 'active', 'bounces alone do not suspend here')
  })

  step('complaints from a trusted feedback loop past the threshold suspend the member', async () => {
    const subject = 'Your second code'
    const sent = await submit([at('dave'), at('erin'), at('gina')], subject)
    assert.deepEqual([...sent.accepted].sort(), [at('dave'), at('erin'), at('gina')])
    const copies = {
      dave: await deliveredTo(at('dave'), subject),
      erin: await deliveredTo(at('erin'), subject),
      gina: await deliveredTo(at('gina'), subject),
    }
    const complaintAbout = (who: keyof typeof copies) =>
      eventually(
        async () => {
          const rows = await events('complaint', at(who))
          return rows.length ? rows[0] : undefined
        },
        WAIT,
        `the complaint about ${who}`,
      )

    // The sink's complaint button: an ARF report signed by the sink's domain, from the sink,
    // to the pool's feedback mailbox on fbl-ingest, which trusts it as the stack configures.
    const { reply } = await api<{ reply: string }>('POST', `/api/sink/${copies.dave.id}/complain`)
    assert.match(reply, /^250 /)
    assert.deepEqual(await complaintAbout('dave'), {
      messageId: (await spooled(at('dave')))!.id,
      source: 'arf',
      status: null,
      feedbackType: 'abuse',
      reporter: SINK_PROVIDER.name,
      reporterAuth: `dkim ${SINK_DOMAIN}`,
    })
    assert.equal((await suppression(at('dave')))?.reason, 'complaint')
    assert.equal((await member()).status, 'active', 'one complaint in five warns, no more')

    // The other provider's reports (see FBL_PROVIDER_DOMAIN), to the pool's MX as DNS names it.
    const fblMx = await mxAddress(network!.dns!.address, POOL_DOMAIN)
    assert.equal(fblMx, INBOUND_HOST)
    /** The provider's report about `who`, from `sender`, DKIM-signed by the provider or not. */
    const complain = async (who: 'erin' | 'gina', sender: string, signed: boolean) => {
      const report = arf({
        to: `fbl@${POOL_DOMAIN}`,
        originalRcptTo: at(who),
        returnedHeaders: headerBlock(copies[who].raw),
      })
      const reply = await sendToMx(
        { host: fblMx, port: inboundPort },
        { from: sender, to: [`fbl@${POOL_DOMAIN}`] },
        signed ? await signAsProvider(report) : report,
      )
      assert.match(reply, /^250 /)
      return complaintAbout(who)
    }
    // The provider's own envelope sender, which SPF passes for the connecting address.
    const first = await complain('erin', `feedback@${FBL_PROVIDER_DOMAIN}`, false)
    assert.deepEqual(first, {
      messageId: (await spooled(at('erin')))!.id,
      source: 'arf',
      status: null,
      feedbackType: 'abuse',
      reporter: 'yahoo',
      reporterAuth: `spf ${FBL_PROVIDER_DOMAIN}`,
    })
    assert.equal((await suppression(at('erin')))?.reason, 'complaint')
    assert.equal((await member()).status, 'active', 'two complaints in five warn, no more')

    // Relayed by someone whose SPF says nothing: the provider's signature alone proves it.
    const second = await complain('gina', 'reports@forwarder.example', true)
    assert.equal(second.reporterAuth, `dkim ${FBL_PROVIDER_DOMAIN}`)
    const suspended = await eventually(
      async () => {
        const m = await member()
        return m.status === 'suspended' ? m : undefined
      },
      WAIT,
      'the suspension',
    )
    assert.match(suspended.statusReason ?? '', /complaint rate .* \(3 complaints, \d+ delivered\) reached the suspend/)
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
    assert.equal(kept(at('frank')).length, 0)
  })

  step('the member’s account shows the suspension, its reason, relay-member gone and the suppressions', async () => {
    await page.goto(`${adminUrl}/account`)
    const region = page.getByRole('region', { name: 'Labels' })
    assert.deepEqual(await region.getByRole('listitem').locator('code').allTextContents(), ['verified-mail-operator'])
    const status = (await page.getByTestId('status').textContent()) ?? ''
    assert.match(status, /^suspended \(complaint rate .* reached the suspend threshold/)
    assert.equal((await page.content()).includes(credentials.password), false)
    // The member's list: both bounced addresses and the three complainants, each from the domain's mail.
    await page.goto(`${adminUrl}/account/suppressions`)
    const listed = await page.locator('tbody tr th[scope=row]').allTextContents()
    assert.deepEqual(listed.sort(), ['bob', 'carol', 'dave', 'erin', 'gina'].map(at))
  })

  step(
    'a reply to the member’s domain reaches its forward-to ARC-sealed, suspended or not, and the account lists it',
    async () => {
      // The domain's MX points at the pool (the wizard's optional record, published with the
      // others above); the member names, in its account, where replies go.
      await page.goto(`${adminUrl}/account/domains/${DOMAIN}`)
      await page.getByLabel('Forward replies to this address').fill(at('alice-inbox'))
      await page.getByRole('button', { name: 'Save the address' }).click()
      await page.waitForURL(/done=forward-set/)
      // A correspondent's MTA answers the PDS's mail: the domain's MX is fbl-ingest now.
      const mx = await mxAddress(network!.dns!.address, DOMAIN)
      assert.equal(mx, INBOUND_HOST)
      const subject = 'Re: Your code'
      const answer = await sendToMx(
        { host: mx, port: inboundPort },
        { from: at('zoe'), to: [`notify@${DOMAIN}`] },
        [
          `From: Zoe <${at('zoe')}>`,
          `To: <notify@${DOMAIN}>`,
          `Subject: ${subject}`,
          `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
          `Message-ID: <reply-1@${RECEIVER}>`,
          '',
          'It worked, thanks.',
          '',
        ].join('\r\n'),
      )
      assert.match(answer, /^250 /)
      const copy = await eventually(
        async () => kept(at('alice-inbox')).find((m) => headerValue(m.raw, 'Subject') === subject),
        WAIT,
        'the forward at the forward-to’s MX',
      )
      // From the pool's SRS address for zoe, sealed by the pool: the chain verifies at the receiver.
      assert.match(
        copy.mailFrom,
        new RegExp(`^srs0=[a-z2-7]{8}=[a-z2-7]{2}=receiver\\.example=zoe@${BOUNCE_DOMAIN.replaceAll('.', '\\.')}$`),
      )
      const verdict = await authenticate(Buffer.from(copy.raw), {
        ip: '127.0.0.1',
        helo: `relay.${POOL_DOMAIN}`,
        sender: copy.mailFrom,
        resolver: dnsResolverFor(network!.dns!.address),
      } as Parameters<typeof authenticate>[1])
      assert.equal(verdict.arc ? verdict.arc.status.result : 'absent', 'pass')
      assert.match(
        copy.raw,
        new RegExp(`^ARC-Seal: i=1; [^\\r\\n]*cv=none;[\\s\\S]*?d=${POOL_DOMAIN.replaceAll('.', '\\.')}`, 'm'),
      )
      // The domain page lists the forward, delivered.
      await eventually(
        async () => {
          await page.goto(`${adminUrl}/account/domains/${DOMAIN}`)
          return (await page.locator('[data-testid=forwards] td[data-state=delivered]').count()) ? true : undefined
        },
        WAIT,
        'the forward shown delivered on the domain page',
      )
    },
  )
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

/** Drops the network's PLC database (on the test database's server), which the network created. */
async function dropDatabase(serverUrl: string, url: string): Promise<void> {
  const admin = new URL(serverUrl)
  admin.pathname = '/postgres'
  const sql = createPool({ url: admin.toString(), poolMax: 1 })
  try {
    const name = decodeURIComponent(new URL(url).pathname.slice(1))
    await sql.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`)
  } finally {
    await sql.end({ timeout: 5 })
  }
}
