import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createPool, type Pool, quoteIdent } from '@atmos/db'
import { issueApiKey } from '@atmos/enrolment'
import { googleReport } from '@atmos/fbl-ingest/dmarc-reports'
import { headerValue, sendToMx } from '@atmos/fbl-ingest/test-harness'
import { eventually, labelerEnv, queryLabels } from '@atmos/labeler/test-harness'
import {
  freePort,
  LocalNetwork,
  type NetworkInfo,
  type PublishedRecord,
  plcDatabaseUrl,
  type SinkEntry,
  serviceDefaults,
} from '@atmos/localnet'
import { TypedQueue, verifyAttestation } from '@atmos/queues'
import { deliveryEnv } from '@atmos/relay/delivery-harness'
import { type AddedMember, addMember } from '@atmos/relay/members'
import {
  BOUNCE_DOMAIN,
  createMember,
  POOL_DOMAIN,
  refusal,
  relayFiles,
  runCli,
  SmtpDialog,
  submissionEnv,
  submitter,
} from '@atmos/relay/test-harness'
import { createKeyringFile, loadKeyring } from '@atmos/secrets'
import {
  createTestDatabase,
  deletePrefix,
  ServiceProcess,
  TEST_REDIS_URL,
  type TestDatabase,
  testRedis,
  testRedisPrefix,
} from '@atmos/testkit'
import { createEndpoint } from '@atmos/webhook-events'
import { AtpAgent } from '@atproto/api'
import { Webhook } from 'standardwebhooks'

// Issue 17's features for senders, end to end on the local network (tools/localnet: PLC and
// PDS, authoritative DNS, the sink MX with its verdicts and next-reply control), with the
// relay (submission, delivery, the send API), fbl-ingest, the webhooks service, the admin and
// the labeler (reading the PDS's firehose) each their own OS process configured only by ATMOS_*
// variables. The members are seeded through the relay's harness (full-path.e2e.test.ts
// already signs in through the browser; the clean-sender member has a PDS account and its
// attestation there, since the labeler labels only what it verifies):
// what is checked here is that the features hold across the processes as deployed — the API
// and SMTP reach the same verdicts and refusals, an idempotent retry sends once, one-click
// unsubscribe suppresses on POST only, a webhook endpoint gets a signed event through
// failures, the throttle rules defer or only record, a forward's bounce goes nowhere, a
// DMARC report reaches the account, and clean-sender follows real deliveries and bounces with
// hysteresis.

const DOMAIN = 'sender-mail.example'
/** A second member whose burst the enforced spike rule defers. */
const SPIKE_DOMAIN = 'spike-mail.example'
/** A third member whose mail to many domains the spray rule, in shadow, only records. */
const SPRAY_DOMAIN = 'spray-mail.example'
/** A fourth member, with an account on the network's PDS and its attestation there: the labeler labels it. */
const CLEAN_DOMAIN = 'clean-mail.example'
/** Any domain but the network's own is the sink's. */
const RECEIVER = 'receiver.example'
const INBOUND_HOST = '127.0.0.1'
/**
 * The spike rule's floor: the main member sends fewer recipients than this in the whole file
 * (so it is never deferred), nor does the clean-sender member; the spike member a burst of SPIKE_FLOOR + 2.
 */
const SPIKE_FLOOR = 20
/** Bound of every wait: generous, for four services and a PDS on a busy two-core machine. */
const WAIT = 60_000
/** Bound of a process's start: a backstop on a machine other tests share. */
const START_WAIT = 180_000
const at = (local: string) => `${local}@${RECEIVER}`
const entry = (pkg: string) => new URL('./index.ts', import.meta.resolve(pkg))

type Kept = SinkEntry & { raw: string }

/** What /v1/send answers: the outcome per recipient, or an error (then accepted and rejected are absent). */
type SendAnswer = {
  accepted: Array<{ recipient: string; messageId: string }>
  rejected: Array<{ recipient: string; reason: string }>
  error: { code: string; message: string; field?: string }
}

describe('what senders get beyond SMTP, every service its own process', () => {
  const started = Date.now()
  let dir: string | undefined
  let network: LocalNetwork | undefined
  let info: NetworkInfo
  let plcDatabase: string | undefined
  let tdb: TestDatabase
  let sql: Pool
  let prefix: string
  const procs: Record<string, ServiceProcess> = {}
  let inboundPort: number
  let submissionPort: number
  let apiBase: string
  let adminUrl: string
  let member: AddedMember
  let spike: AddedMember
  let spray: AddedMember
  let apiKey: string
  /** The admin's session cookie of the main member (seeded as a sign-in leaves it). */
  let cookie: string
  let webhooksKek: string
  let clean: AddedMember
  let labelerXrpc: string
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
    dir = mkdtempSync(join(tmpdir(), 'atmos-senders-'))
    process.env.TMPDIR = dir
    tdb = await createTestDatabase()
    sql = createPool({ url: tdb.url, poolMax: 3 })
    prefix = testRedisPrefix('senders')
    const files = relayFiles()
    const base = {
      ATMOS_DATABASE_URL: tdb.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: prefix,
      ATMOS_HTTP_PORT: '0',
      ATMOS_LOG_LEVEL: 'info',
    }
    // The operator's one-time command before the network: its zone publishes the pool key.
    const keys = await runCli(['keys', 'init'], {
      ...submissionEnv({ databaseUrl: tdb.url, redisPrefix: prefix, files }),
      ...base,
    })
    assert.equal(keys.code, 0, keys.err)

    inboundPort = await freePort()
    // The relay writes the admin's /u URL into List-Unsubscribe: the admin's port is chosen first.
    const adminPort = await freePort()
    adminUrl = `http://127.0.0.1:${adminPort}`
    plcDatabase = plcDatabaseUrl(tdb.url)
    network = new LocalNetwork({
      stateDir: join(dir, 'localnet'),
      plcDatabaseUrl: plcDatabase,
      databaseUrl: tdb.url,
      pool: { domain: POOL_DOMAIN, bounceDomain: BOUNCE_DOMAIN },
      inbound: { host: INBOUND_HOST, port: inboundPort },
    })
    info = await network.start()

    // The members, enrolled as `relay domains add` does (keys sealed under the relay's KEK),
    // their attestations holding; each domain's records published in the network's zone as the
    // wizard proposes them: SPF through the pool, DMARC p=reject reporting to the pool, the
    // two DKIM keys, and (the main domain) its MX at the pool, for replies.
    const keyring = loadKeyring(files.kekFile)
    member = await createMember({ sql, keyring }, DOMAIN, { activatedDaysAgo: 30 })
    spike = await createMember({ sql, keyring }, SPIKE_DOMAIN, { activatedDaysAgo: 30 })
    spray = await createMember({ sql, keyring }, SPRAY_DOMAIN, { activatedDaysAgo: 30 })
    const records: PublishedRecord[] = [member, spike, spray].flatMap((m) => [
      { name: m.domain, type: 'TXT', strings: [`v=spf1 include:_spf.${POOL_DOMAIN} -all`] },
      { name: `_dmarc.${m.domain}`, type: 'TXT', strings: [`v=DMARC1; p=reject; rua=mailto:dmarc@${POOL_DOMAIN}`] },
      ...m.keys.map((k): PublishedRecord => ({ name: k.txtName, type: 'TXT', strings: chunks(k.txt) })),
    ])
    records.push({ name: DOMAIN, type: 'MX', priority: 10, exchange: `mx.${POOL_DOMAIN}` })
    // The clean-sender member is a PDS account whose attestation the labeler verifies: its
    // zone is what the wizard proposes, with its DID under _atproto and its MX at the pool.
    const agent = new AtpAgent({ service: info.pdsUrl })
    await agent.createAccount({ email: 'clean@mail.test', handle: 'clean.test', password: 'correct horse battery' })
    clean = await addMember(sql, keyring, { did: agent.session!.did, domain: CLEAN_DOMAIN, maxDomains: 2 })
    records.push(
      { name: CLEAN_DOMAIN, type: 'TXT', strings: [`v=spf1 include:_spf.${POOL_DOMAIN} -all`] },
      { name: CLEAN_DOMAIN, type: 'MX', priority: 10, exchange: `mx.${POOL_DOMAIN}` },
      { name: `_dmarc.${CLEAN_DOMAIN}`, type: 'TXT', strings: [`v=DMARC1; p=reject; rua=mailto:dmarc@${POOL_DOMAIN}`] },
      { name: `_atproto.${CLEAN_DOMAIN}`, type: 'TXT', strings: [`did=${clean.did}`] },
      ...clean.keys.map((k): PublishedRecord => ({ name: k.txtName, type: 'TXT', strings: chunks(k.txt) })),
    )
    network.publish(records)
    // Replies to the main domain go to its forward-to, at the sink.
    await sql`update domains set forward_to = ${at('member-inbox')} where id = ${member.domainId}`
    apiKey = (await issueApiKey(sql, { did: member.did, domain: DOMAIN })).key
    const session = randomBytes(32).toString('base64url')
    await sql`
      insert into web_sessions (id_hash, did, expires_at)
      values (${createHash('sha256').update(session).digest('base64url')}, ${member.did}, now() + interval '1 hour')`
    cookie = `atmos_session=${session}`

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
    procs.relay = new ServiceProcess(entry('@atmos/relay'), {
      ...deliveryEnv({ databaseUrl: tdb.url, redisPrefix: prefix, dnsPort: info.dns.port, mxPort: info.sink.port }),
      ...submissionEnv({ databaseUrl: tdb.url, redisPrefix: prefix, files }),
      ...shared,
      ATMOS_RELAY_ROLES: 'submission,delivery',
      ATMOS_RELAY_API_ENABLED: 'true',
      ATMOS_RELAY_API_PORT: '0',
      ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_URL: `${adminUrl}/u`,
      // The spike rule enforced at a floor the main member never reaches; spray in shadow,
      // firing for a handful of recipients spread over as many domains.
      ATMOS_RELAY_THROTTLE_SPIKE_MODE: 'enforce',
      ATMOS_RELAY_THROTTLE_SPIKE_FLOOR: String(SPIKE_FLOOR),
      ATMOS_RELAY_THROTTLE_SPRAY_MODE: 'shadow',
      ATMOS_RELAY_THROTTLE_SPRAY_FLOOR: '4',
      ATMOS_RELAY_THROTTLE_SPRAY_MAX_DOMAINS: '100',
      ATMOS_RELAY_THROTTLE_SPRAY_MAX_RATIO: '0.5',
      // Counts read from Postgres at every check: the burst is counted as it is spooled.
      ATMOS_RELAY_THROTTLE_CACHE_TTL: '0',
    })
    procs['fbl-ingest'] = new ServiceProcess(entry('@atmos/fbl-ingest'), {
      ...shared,
      ATMOS_FBL_INGEST_POOL_DOMAIN: POOL_DOMAIN,
      ATMOS_FBL_INGEST_POOL_BOUNCE_DOMAIN: BOUNCE_DOMAIN,
      ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE: files.tokenSecretFile,
      ATMOS_FBL_INGEST_POOL_KEK_FILE: files.poolKekFile,
      ATMOS_FBL_INGEST_SMTP_HOST: INBOUND_HOST,
      ATMOS_FBL_INGEST_SMTP_PORT: String(inboundPort),
      // RCPT reads a domain's forward-to state afresh: the forward's bounce shows at the next reply.
      ATMOS_FBL_INGEST_FORWARDING_CACHE_TTL: '0s',
    })
    webhooksKek = join(dir, 'webhooks-kek')
    createKeyringFile(webhooksKek)
    procs.webhooks = new ServiceProcess(entry('@atmos/webhooks'), {
      ...shared,
      ATMOS_WEBHOOKS_KEK_FILE: webhooksKek,
      // Three quick retries instead of hours: the endpoint fails twice, then takes the event.
      ATMOS_WEBHOOKS_RETRY_SCHEDULE: '200ms,200ms,200ms',
      ATMOS_WEBHOOKS_POLL_INTERVAL: '100ms',
    })
    const adminKek = join(dir, 'admin-kek')
    createKeyringFile(adminKek)
    procs.admin = new ServiceProcess(entry('@atmos/admin'), {
      ...shared,
      ATMOS_ADMIN_WEB_PORT: String(adminPort),
      ATMOS_ADMIN_KEK_FILE: adminKek,
      ATMOS_ADMIN_LABELER_URL: '',
      // The pool's token secret, the relay's own file: it verifies the /u tokens.
      ATMOS_ADMIN_TOKEN_SECRET_FILE: files.tokenSecretFile,
      ATMOS_ADMIN_ENROLL_KEK_FILE: files.kekFile,
    })
    const labelerSetup = await labelerEnv({
      databaseUrl: tdb.url,
      jetstreamUrl: 'ws://127.0.0.1:9/unused',
      dnsPort: info.dns.port,
      plcUrl: info.plcUrl,
    })
    procs.labeler = new ServiceProcess(entry('@atmos/labeler'), {
      ...labelerSetup.env,
      ...shared,
      // clean-sender over a handful of messages: issued below 20 % hard bounces over at least
      // 4 messages, negated at 40 %, and between the two it keeps whatever it was (hysteresis).
      ATMOS_LABELER_CLEAN_SENDER_MIN_VOLUME: '4',
      ATMOS_LABELER_CLEAN_SENDER_ISSUE_BOUNCE_RATE: '0.2',
      ATMOS_LABELER_CLEAN_SENDER_NEGATE_BOUNCE_RATE: '0.4',
    })
    const [submission, api, , , xrpc] = await Promise.all([
      procs.relay.waitForLog((l) => l.msg === 'submission listening (STARTTLS)', START_WAIT),
      procs.relay.waitForLog((l) => l.msg === 'send API listening', START_WAIT),
      procs['fbl-ingest'].waitForLog((l) => l.msg === 'inbound smtp listening', START_WAIT),
      procs.admin.waitForLog((l) => l.msg === 'admin web endpoint listening', START_WAIT),
      procs.labeler.waitForLog((l) => l.msg === 'xrpc endpoint listening', START_WAIT),
    ])
    labelerXrpc = String(xrpc.xrpc)
    submissionPort = Number(String(submission.smtp).split(':').pop())
    apiBase = String(api.api)
    await Promise.all(Object.values(procs).map((p) => p.waitForLog((l) => l.msg === 'started', START_WAIT)))
    await firehoseLive(sql, info.pdsUrl)
    console.log(`set-up: ${((Date.now() - started) / 1000).toFixed(1)} s`)
  }

  after(async () => {
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
    if (broken) console.log(`kept ${dir}`)
    else if (dir) rmSync(dir, { recursive: true, force: true })
    console.log(`wall time: ${((Date.now() - started) / 1000).toFixed(1)} s`)
    for (const { name, exit } of stopped) assert.equal(exit.code, 0, `${name} stopped cleanly: ${JSON.stringify(exit)}`)
  })

  /** What the sink kept for `address`. */
  function kept(address: string): Kept[] {
    const sink = network!.sink!
    return sink
      .list()
      .filter((e) => e.rcptTo.includes(address))
      .map((e) => ({ ...e, raw: sink.raw(e.id)!.toString('utf8') }))
  }

  /** The recipient rows the relay spooled for `address`, with their state. */
  async function spooled(address: string) {
    const rows = await sql<{ id: string; state: string; lastReply: string | null }[]>`
      select m.id, r.state, r.last_reply as "lastReply"
      from messages m join message_recipients r on r.message_id = m.id where r.address = ${address}`
    return [...rows]
  }

  /** Waits until the sink holds a copy for `address` and the relay recorded it delivered. */
  async function deliveredTo(address: string): Promise<Kept> {
    const copy = await eventually(async () => kept(address)[0], WAIT, `delivery to ${address}`)
    await eventually(
      async () => ((await spooled(address)).every((r) => r.state === 'delivered') ? true : undefined),
      WAIT,
      `the relay to record the delivery to ${address}`,
    )
    return copy
  }

  /** Submits as `m` with its credentials on the relay's submission port. */
  async function submit(m: AddedMember, mail: { from?: string; to: string[]; subject: string; headers?: object }) {
    const t = submitter(submissionPort, m.username, m.password)
    try {
      return await t.sendMail({
        from: mail.from ?? `notify@${m.domain}`,
        to: mail.to,
        subject: mail.subject,
        text: 'Your code is 123456\n',
        ...(mail.headers ? { headers: mail.headers as Record<string, string> } : {}),
      })
    } finally {
      t.close()
    }
  }

  /** POST /v1/send with the member's API key; the answer's status, body and headers. */
  async function send(body: Record<string, unknown>, headers: Record<string, string> = {}) {
    const res = await fetch(`${apiBase}/v1/send`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}`, ...headers },
      body: JSON.stringify({ from: `notify@${DOMAIN}`, text: 'Your code is 123456\n', ...body }),
    })
    return { status: res.status, body: (await res.json()) as SendAnswer }
  }

  /** The network's JSON API; anything but 200 fails the step. */
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

  async function suppression(m: AddedMember, address: string) {
    const [row] = await sql<{ reason: string }[]>`
      select reason from suppressions where member_id = ${m.id} and address = ${address} and removed_at is null`
    return row
  }

  /** An admin page as the signed-in member sees it. */
  async function page(path: string) {
    const res = await fetch(`${adminUrl}${path}`, { headers: { cookie }, redirect: 'manual' })
    return { status: res.status, body: await res.text() }
  }

  /** Every relay recipient in a final state: nothing the sink's next-reply control could be spent on. */
  async function quiet() {
    await eventually(
      async () => {
        const [row] = await sql<{ n: number }[]>`
          select count(*)::int as n from message_recipients where state in ('queued', 'deferred')`
        return row!.n === 0 ? true : undefined
      },
      WAIT,
      'every delivery settled',
    )
  }

  /** Each test is independent of the others' outcome but not of the set-up. */
  const step = (name: string, fn: () => Promise<void>) =>
    it(name, async (t) => {
      if (broken === 'set-up') return t.skip('the set-up failed')
      try {
        await fn()
      } catch (err) {
        broken ??= name
        throw err
      }
    })

  const expectedSignatures = () =>
    [
      [DOMAIN, 'ed25519-sha256', 'atmos1e', 'pass'],
      [DOMAIN, 'rsa-sha256', 'atmos1r', 'pass'],
      [POOL_DOMAIN, 'rsa-sha256', 'pool1', 'pass'],
    ].sort()

  /** The verdicts the sink recorded for a copy, as comparable values. */
  const verdictsOf = (copy: Kept) => ({
    dkim: copy.verdicts.dkim.map((d) => [d.domain, d.algorithm, d.selector, d.result]).sort(),
    spf: copy.verdicts.spf.result,
    dmarc: [copy.verdicts.dmarc.result, copy.verdicts.dmarc.domain],
    error: copy.verdicts.error,
  })

  step('the same message by SMTP and by the API reaches the sink with the same verdicts', async () => {
    const subject = 'Your sign-in code'
    const bySmtp = await submit(member, { to: [at('smtp-1')], subject })
    assert.match(bySmtp.response, /^250 /)
    const byApi = await send({ to: at('api-1'), subject })
    assert.equal(byApi.status, 200, JSON.stringify(byApi.body))
    assert.deepEqual(
      byApi.body.accepted.map((a) => a.recipient),
      [at('api-1')],
    )
    assert.deepEqual(byApi.body.rejected, [])
    const [smtpCopy, apiCopy] = [await deliveredTo(at('smtp-1')), await deliveredTo(at('api-1'))]
    const expected = { dkim: expectedSignatures(), spf: 'pass', dmarc: ['pass', DOMAIN], error: undefined }
    assert.deepEqual(verdictsOf(smtpCopy), expected)
    assert.deepEqual(verdictsOf(apiCopy), expected)
    for (const copy of [smtpCopy, apiCopy]) {
      assert.equal(copy.secure, true, 'delivered over STARTTLS')
      assert.equal(headerValue(copy.raw, 'Subject'), subject)
      assert.match(copy.mailFrom, new RegExp(`@${BOUNCE_DOMAIN.replaceAll('.', '\\.')}$`), 'the VERP return path')
    }
  })

  step('SMTP and the API refuse a suppressed recipient and a foreign From alike', async () => {
    await sql`insert into suppressions (member_id, address, reason) values (${member.id}, ${at('gone')}, 'hard_bounce')`
    const smtp = await refusal(submit(member, { to: [at('gone')], subject: 'To the gone' }))
    assert.equal(smtp.responseCode, 550, smtp.message)
    assert.equal(smtp.command, 'RCPT TO')
    assert.match(smtp.response ?? '', /^550 5\.1\.1 .*suppression list/)
    const viaApi = await send({ to: at('gone'), subject: 'To the gone' })
    assert.equal(viaApi.status, 200, 'only rejected recipients: still an answer, nothing sent')
    assert.deepEqual(viaApi.body.accepted, [])
    assert.equal(viaApi.body.rejected.length, 1)
    assert.equal(viaApi.body.rejected[0]!.recipient, at('gone'))
    assert.ok(
      (smtp.response ?? '').includes(viaApi.body.rejected[0]!.reason),
      `the same refusal: ${smtp.response} / ${viaApi.body.rejected[0]!.reason}`,
    )
    assert.deepEqual(await spooled(at('gone')), [], 'neither spooled anything')

    const foreign = 'notify@not-the-members.example'
    const smtpForeign = await refusal(submit(member, { from: foreign, to: [at('x')], subject: 'Forged' }))
    assert.equal(smtpForeign.responseCode, 550, smtpForeign.message)
    assert.match(smtpForeign.response ?? '', /^550 5\.7\.1 /)
    const apiForeign = await send({ from: foreign, to: at('x'), subject: 'Forged' })
    assert.equal(apiForeign.status, 403)
    assert.equal(apiForeign.body.error.code, 'DOMAIN_MISMATCH')
    assert.deepEqual(await spooled(at('x')), [])
  })

  step('a request retried with the same Idempotency-Key is answered the same and sent once', async () => {
    const request = { to: at('idem'), subject: 'Once only' }
    const key = { 'idempotency-key': `e2e-${randomBytes(6).toString('hex')}` }
    const first = await send(request, key)
    assert.equal(first.status, 200, JSON.stringify(first.body))
    const retry = await send(request, key)
    assert.equal(retry.status, 200)
    assert.deepEqual(retry.body, first.body, 'the first answer, again')
    await deliveredTo(at('idem'))
    // Delivered and recorded: one spooled copy, one copy at the sink, nothing else to come.
    assert.equal((await spooled(at('idem'))).length, 1)
    assert.equal(kept(at('idem')).length, 1)
    // Another key is another request.
    const other = await send(request, { 'idempotency-key': `e2e-${randomBytes(6).toString('hex')}` })
    assert.notEqual(other.body.accepted[0]!.messageId, first.body.accepted[0]!.messageId)
    await eventually(async () => (kept(at('idem')).length === 2 ? true : undefined), WAIT, 'the second request')
  })

  step('one-click unsubscribe: a GET changes nothing, a POST suppresses, then SMTP refuses', async () => {
    const reader = at('reader')
    const sent = await send({ to: reader, subject: 'Our December news', category: 'newsletter' })
    assert.equal(sent.status, 200, JSON.stringify(sent.body))
    const copy = await deliveredTo(reader)
    assert.deepEqual(verdictsOf(copy).dkim, expectedSignatures(), 'the added headers are signed')
    assert.equal(headerValue(copy.raw, 'List-Unsubscribe-Post'), 'List-Unsubscribe=One-Click')
    const list = headerValue(copy.raw, 'List-Unsubscribe') ?? ''
    const url = /<(http:\/\/127\.0\.0\.1:\d+\/u\/[^>]+)>/.exec(list)?.[1]
    assert.ok(url?.startsWith(`${adminUrl}/u/`), `the admin's /u URL in ${list}`)
    assert.match(list, /<mailto:[^>]+>/)

    // A transactional category carries none.
    await send({ to: at('login'), subject: 'Sign in', category: 'login-link' })
    assert.equal(headerValue((await deliveredTo(at('login'))).raw, 'List-Unsubscribe'), undefined)

    // Link scanners fetch: a GET shows the confirmation and suppresses nothing.
    const get = await fetch(url!)
    assert.equal(get.status, 200)
    assert.match(await get.text(), /<form[^>]*method="post"/i)
    assert.equal(await suppression(member, reader), undefined)

    // The provider's RFC 8058 POST, no cookie, no Origin.
    const post = await fetch(url!, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    })
    assert.equal(post.status, 200, await post.text())
    assert.deepEqual(await suppression(member, reader), { reason: 'unsubscribe' })

    const refused = await refusal(submit(member, { to: [reader], subject: 'More news' }))
    assert.equal(refused.responseCode, 550, refused.message)
    assert.equal(refused.command, 'RCPT TO')
    assert.match(refused.response ?? '', /^550 5\.1\.1 .*unsubscribed/)
    assert.equal(kept(reader).length, 1)
  })

  step('a webhook endpoint failing twice gets the signed message.delivered event on the third try', async () => {
    const received: Array<{ headers: IncomingHttpHeaders; body: string; status: number }> = []
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const status = received.length < 2 ? 500 : 204
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), status })
        res.writeHead(status).end()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`
      const { secret } = await createEndpoint(sql, loadKeyring(webhooksKek), {
        memberId: member.id,
        url,
        events: ['message.delivered'],
      })
      const sent = await send({ to: at('hooked'), subject: 'Hooked' })
      const messageId = sent.body.accepted[0]!.messageId as string
      await deliveredTo(at('hooked'))
      const delivered = await eventually(
        async () => (received.some((r) => r.status === 204) ? received : undefined),
        WAIT,
        'the event taken by the endpoint',
      )
      assert.deepEqual(
        delivered.map((r) => r.status),
        [500, 500, 204],
      )
      // One event, retried: the same id every time, each attempt signed.
      const ids = new Set(delivered.map((r) => r.headers['webhook-id']))
      assert.equal(ids.size, 1)
      const wh = new Webhook(secret)
      const last = delivered[2]!
      const event = wh.verify(last.body, {
        'webhook-id': String(last.headers['webhook-id']),
        'webhook-timestamp': String(last.headers['webhook-timestamp']),
        'webhook-signature': String(last.headers['webhook-signature']),
      }) as { type: string; data: { messageId: string; recipient: string } }
      assert.equal(event.type, 'message.delivered')
      assert.equal(event.data.recipient, at('hooked'))
      assert.equal(event.data.messageId, messageId)
      // Signed with this endpoint's secret and no other.
      assert.throws(() =>
        new Webhook(`whsec_${randomBytes(32).toString('base64')}`).verify(last.body, {
          'webhook-id': String(last.headers['webhook-id']),
          'webhook-timestamp': String(last.headers['webhook-timestamp']),
          'webhook-signature': String(last.headers['webhook-signature']),
        }),
      )
      const [row] = await sql<{ state: string; attempts: number }[]>`
        select d.state, d.attempts from webhook_deliveries d join webhook_events e on e.id = d.event_id
        where e.id = ${String(last.headers['webhook-id'])}`
      assert.deepEqual(row, { state: 'delivered', attempts: 3 })
    } finally {
      server.close()
    }
  })

  step('an enforced spike defers a burst with 451 4.7.1; spray in shadow accepts and records', async () => {
    const burst = Array.from({ length: SPIKE_FLOOR + 2 }, (_, i) => `b${i}@${RECEIVER}`)
    const { rcpt, data } = await transaction(submissionPort, spike, burst)
    assert.deepEqual(
      rcpt.map((r) => r.slice(0, 3)),
      [...Array(SPIKE_FLOOR).fill('250'), '451', '451'],
    )
    assert.match(rcpt[SPIKE_FLOOR]!, new RegExp(`^451 4\\.7\\.1 spike: ${SPIKE_DOMAIN.replaceAll('.', '\\.')} sent `))
    assert.match(data ?? '', /^250 /)
    const [decision] = await sql<{ rule: string; mode: string; action: string }[]>`
      select rule, mode, action from throttle_decisions where domain_id = ${spike.domainId}`
    assert.deepEqual(decision, { rule: 'spike', mode: 'enforce', action: 'deferred' })

    // Five recipients at five domains: spray fires, but only records.
    const spread = Array.from({ length: 5 }, (_, i) => `r@spread${i}.example`)
    const sprayed = await transaction(submissionPort, spray, spread)
    assert.deepEqual(
      sprayed.rcpt.map((r) => r.slice(0, 3)),
      Array(5).fill('250'),
    )
    assert.match(sprayed.data ?? '', /^250 /)
    const recorded = await eventually(
      async () => {
        const rows = await sql<{ rule: string; mode: string; figures: Record<string, unknown> }[]>`
          select rule, mode, figures from throttle_decisions where domain_id = ${spray.domainId}`
        return rows.length ? rows : undefined
      },
      WAIT,
      'the spray decision',
    )
    assert.deepEqual(
      recorded.map((r) => [r.rule, r.mode]),
      [['spray', 'shadow']],
    )
    const [n] = await sql<{ n: number }[]>`
      select count(*)::int as n from message_recipients r join messages m on m.id = r.message_id
      where m.domain_id = ${spray.domainId}`
    assert.equal(n!.n, 5, 'every sprayed recipient spooled')
    // The main member was never throttled.
    const [mine] = await sql<{ n: number }[]>`
      select count(*)::int as n from throttle_decisions where domain_id = ${member.domainId} and mode = 'enforce'`
    assert.equal(mine!.n, 0)
  })

  step('a forward the forward-to refuses is recorded bounced and bounced nowhere', async () => {
    // The control answers whichever RCPT comes next: nothing else may be in flight.
    await quiet()
    const before = new Set(network!.sink!.list().map((e) => e.id))
    assert.deepEqual(await api('POST', '/api/sink/next', { reply: 'hard' }), { nextReply: 'hard' })
    /** A correspondent's reply to the member's domain, at the pool's MX (fbl-ingest). */
    const reply = (from: string) =>
      sendToMx(
        { host: INBOUND_HOST, port: inboundPort },
        { from, to: [`notify@${DOMAIN}`] },
        [
          `From: <${from}>`,
          `To: <notify@${DOMAIN}>`,
          'Subject: Re: Your sign-in code',
          `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
          `Message-ID: <reply-${randomBytes(4).toString('hex')}@${RECEIVER}>`,
          '',
          'Thanks.',
          '',
        ].join('\r\n'),
      )
    assert.match(await reply(at('zoe')), /^250 /)
    const forward = await eventually(
      async () => {
        const [row] = await sql<{ messageId: string | null; state: string; returnPath: string }[]>`
          select message_id as "messageId", state, return_path as "returnPath"
          from inbound_forwards where domain_id = ${member.domainId}`
        return row?.messageId ? row : undefined
      },
      WAIT,
      'the forward spooled',
    )
    assert.match(
      forward.returnPath,
      new RegExp(`^srs0=.*=receiver\\.example=zoe@${BOUNCE_DOMAIN.replaceAll('.', '\\.')}$`),
    )
    const bounced = await eventually(
      async () => {
        const [row] = await sql<{ state: string; lastReply: string | null }[]>`
          select state, last_reply as "lastReply" from message_recipients where message_id = ${forward.messageId}`
        return row?.state === 'bounced' ? row : undefined
      },
      WAIT,
      'the forward refused by the sink',
    )
    assert.match(bounced.lastReply ?? '', /^550 5\.1\.1/)
    assert.equal((await api<{ nextReply: string | null }>('GET', '/api/sink')).nextReply, null, 'spent on it')
    // No notice of any kind was spooled: none to zoe, none to the SRS address, none to the member.
    const [notices] = await sql<{ n: number }[]>`
      select count(*)::int as n from messages where envelope_from = '' or (member_id is null and id <> ${forward.messageId})`
    assert.equal(notices!.n, 0)
    assert.deepEqual(await spooled(at('zoe')), [])
    await quiet()
    assert.deepEqual(
      network!
        .sink!.list()
        .filter((e) => !before.has(e.id))
        .map((e) => e.rcptTo),
      [],
      'the sink received nothing more',
    )
    // The refused forward-to counts as suppressed: the next reply is refused at RCPT, so the
    // correspondent's own MTA tells it, and the pool sends nothing.
    const next = await refusal(reply(at('yann')))
    assert.equal(next.responseCode, 550, next.message)
    assert.match(next.response ?? '', /^550 5\.1\.1 /)
    // The member's domain page shows the forward bounced.
    await eventually(
      async () => {
        const { body } = await page(`/account/domains/${DOMAIN}`)
        return /data-testid="forwards"[\s\S]*data-state="bounced"/.test(body) ? true : undefined
      },
      WAIT,
      'the forward shown bounced on the domain page',
    )
  })

  step('a DMARC aggregate report (zip) mailed to the pool’s mailbox shows on the member’s page', async () => {
    const day = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10)
    const mailbox = `dmarc@${POOL_DOMAIN}`
    const report = googleReport(
      {
        org: 'google.com',
        email: 'noreply-dmarc-support@google.com',
        reportId: randomBytes(8).toString('hex'),
        domain: DOMAIN,
        begin: Date.parse(`${day}T00:00:00Z`) / 1000,
        rows: [
          { ip: '127.0.0.1', count: 42, headerFrom: DOMAIN },
          { ip: '203.0.113.9', count: 7, dkim: 'fail', spf: 'fail', disposition: 'reject', headerFrom: DOMAIN },
        ],
      },
      mailbox,
    )
    const reply = await sendToMx(
      { host: INBOUND_HOST, port: inboundPort },
      { from: at('dmarc-reports'), to: [mailbox] },
      report,
    )
    assert.match(reply, /^250 /)
    await eventually(
      async () => {
        const [row] = await sql<{ n: number }[]>`
          select count(*)::int as n from dmarc_reports where member_id = ${member.id}`
        return row!.n > 0 ? true : undefined
      },
      WAIT,
      'the report stored for the member',
    )
    const { status, body } = await page(`/account/domains/${DOMAIN}/dmarc`)
    assert.equal(status, 200)
    assert.match(body, new RegExp(`<h2>${day}</h2>`))
    const pool = section(body, 'dmarc-pool')
    assert.match(pool, /<code>127\.0\.0\.1<\/code>/)
    assert.match(pool, /<td>42<\/td>/)
    assert.doesNotMatch(pool, /203\.0\.113\.9/)
    const others = section(body, 'dmarc-others')
    assert.match(others, /<code>203\.0\.113\.9<\/code>.*<td>7<\/td><td>fail<\/td><td>fail<\/td><td>reject<\/td>/)
  })

  step('clean-sender is issued, kept between its thresholds, negated, and re-issued after recovery', async () => {
    const did = clean.did
    const labelsOf = async () =>
      (await queryLabels(labelerXrpc, did))
        .filter((l) => !l.neg)
        .map((l) => l.val)
        .sort()
    /** The labeler's stored clean-sender label: a new seq is a new label emitted. */
    const stored = async () => {
      const [row] = await sql<{ seq: number; neg: boolean; reason: string | null }[]>`
        select seq::int as seq, neg, reason from labels where uri = ${did} and val = 'clean-sender'
        order by seq desc limit 1`
      return row
    }
    /** The scheduler's daily sweep, as it enqueues it: a verification run recomputing the labels. */
    const sweep = async () => {
      const runs = async () => {
        const [row] = await sql<{ n: number }[]>`
          select count(*)::int as n from verification_runs where did = ${did} and trigger = 'schedule' and finished_at is not null`
        return row!.n
      }
      const before = await runs()
      const redis = testRedis()
      const queue = new TypedQueue(verifyAttestation, redis, prefix)
      try {
        await queue.enqueue({ did, trigger: 'schedule', requestedAt: new Date().toISOString() })
        await eventually(async () => ((await runs()) > before ? true : undefined), WAIT, 'a scheduled run')
      } finally {
        await queue.close()
        redis.disconnect()
      }
    }
    /** Recipients at the sink, delivered; each its own spooled message. */
    const deliver = async (n: number, tag: string) => {
      const to = Array.from({ length: n }, (_, i) => at(`${tag}${i}`))
      const sent = await submit(clean, { to, subject: `Clean ${tag}` })
      assert.equal(sent.accepted.length, n)
      for (const r of to) await deliveredTo(r)
    }
    /** One recipient the sink refuses (550 5.1.1): a hard bounce of the member's. */
    const bounce = async (tag: string) => {
      await quiet()
      assert.deepEqual(await api('POST', '/api/sink/next', { reply: 'hard' }), { nextReply: 'hard' })
      await submit(clean, { to: [at(tag)], subject: `Clean ${tag}` })
      await eventually(
        async () => ((await spooled(at(tag)))[0]?.state === 'bounced' ? true : undefined),
        WAIT,
        `${tag} bounced`,
      )
      await quiet()
    }

    // The attestation lands in the PDS repo; the labeler reads it off the firehose and labels.
    const agent = new AtpAgent({ service: info.pdsUrl })
    await agent.login({ identifier: 'clean.test', password: 'correct horse battery' })
    await agent.com.atproto.repo.putRecord({
      repo: did,
      collection: 'email.atmos.attestation',
      rkey: CLEAN_DOMAIN,
      record: { ...clean.attestation },
    })
    await eventually(
      async () => ((await labelsOf()).includes('relay-member') ? true : undefined),
      WAIT,
      'relay-member from the labeler process',
    )
    assert.equal(await stored(), undefined, 'no clean-sender without volume')

    // 0 bounces in 4 messages: issued.
    await deliver(4, 'clean')
    await sweep()
    const issued = await stored()
    assert.equal(issued?.neg, false, JSON.stringify(issued))
    assert.match(issued!.reason ?? '', /clean-sender issued: 30 days: 4 messages/)
    assert.ok((await labelsOf()).includes('clean-sender'))

    // 1 in 5 = 20 %: not below the issue threshold, not at the negate one: kept, nothing emitted.
    await bounce('gone-a')
    await sweep()
    assert.equal((await stored())!.seq, issued!.seq, 'kept between the thresholds')

    // 3 in 7 ≈ 43 %: negated, with the figures.
    await bounce('gone-b')
    await bounce('gone-c')
    await sweep()
    const negated = await stored()
    assert.equal(negated?.neg, true, JSON.stringify(negated))
    assert.match(negated!.reason ?? '', /hard-bounce rate reached the negate threshold; 30 days: 7 messages/)
    assert.equal((await labelsOf()).includes('clean-sender'), false)

    // 3 in 9 ≈ 33 %: below negate, not below issue: stays negated.
    await deliver(2, 'calm')
    await sweep()
    assert.equal((await stored())!.seq, negated!.seq, 'not re-issued between the thresholds')

    // 3 in 16 ≈ 19 %: recovered, re-issued.
    await deliver(7, 'back')
    await sweep()
    const reissued = await stored()
    assert.equal(reissued?.neg, false, JSON.stringify(reissued))
    assert.ok(reissued!.seq > negated!.seq)
    assert.match(reissued!.reason ?? '', /clean-sender issued: 30 days: 16 messages/)
  })
})

/**
 * Waits until the labeler process reading `pdsUrl`'s firehose has taken an event (its cursor
 * is saved): a fresh subscription starts live, so what is written before it is up would be
 * missed. Each probe account emits events of its own.
 */
async function firehoseLive(sql: Pool, pdsUrl: string): Promise<void> {
  const deadline = Date.now() + WAIT
  for (let n = 0; Date.now() < deadline; n++) {
    const handle = `probe${n}-${randomBytes(3).toString('hex')}.test`
    await new AtpAgent({ service: pdsUrl }).createAccount({
      email: `${handle}@mail.test`,
      handle,
      password: 'correct horse battery',
    })
    const seen = await eventually(
      async () => ((await sql`select 1 from ingest_cursors limit 1`).length ? true : undefined),
      2_000,
      'the ingest cursor',
    ).catch(() => undefined)
    if (seen) return
  }
  throw new Error(`the labeler's firehose subscription to ${pdsUrl} took no event in ${WAIT} ms`)
}

/** One SMTP transaction over STARTTLS + AUTH: each RCPT's reply, and DATA's when any was accepted. */
async function transaction(
  port: number,
  m: { username: string; password: string; domain: string },
  to: string[],
): Promise<{ rcpt: string[]; data: string | null }> {
  const { dialog } = await SmtpDialog.open(port)
  try {
    await dialog.send('EHLO client.example')
    await dialog.starttls()
    await dialog.send('EHLO client.example')
    assert.match(await dialog.login(m.username, m.password), /^235 /)
    assert.match(await dialog.send(`MAIL FROM:<notify@${m.domain}>`), /^250 /)
    const rcpt: string[] = []
    for (const r of to) rcpt.push(await dialog.send(`RCPT TO:<${r}>`))
    if (!rcpt.some((r) => r.startsWith('250'))) return { rcpt, data: null }
    assert.match(await dialog.send('DATA'), /^354 /)
    const data = await dialog.send(
      `From: notify@${m.domain}\r\nTo: list@${RECEIVER}\r\nSubject: burst\r\nDate: ${new Date().toUTCString()}\r\n\r\nbody\r\n.`,
    )
    return { rcpt, data }
  } finally {
    dialog.close()
  }
}

/** A TXT value cut into 255-byte character-strings. */
function chunks(value: string): string[] {
  const out: string[] = []
  for (let i = 0; i < value.length; i += 255) out.push(value.slice(i, i + 255))
  return out
}

/** The table a data-testid names, up to its end. */
function section(body: string, id: string): string {
  const start = body.indexOf(`data-testid="${id}"`)
  assert.ok(start >= 0, `no ${id} on the page`)
  return body.slice(start, body.indexOf('</table>', start) + 8)
}

/** The last lines a process logged, for a failed run. */
function tail(p: ServiceProcess, n = 60): string {
  return p.dump().split('\n').slice(-n).join('\n')
}

/** Drops the network's PLC database, which the network created. */
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
