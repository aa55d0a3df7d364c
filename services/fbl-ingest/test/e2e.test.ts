// The relay harness compiles relay sources here; their mailauth typings are an ambient .d.ts
// that sign.ts does not reference, so only the relay's own tsconfig would find it.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createPool, type Pool } from '@atmos/db'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  LabelSubscriber,
  queryLabels,
  startLabeler,
} from '@atmos/labeler/test-harness'
import {
  BOUNCE_DOMAIN,
  POOL_DOMAIN,
  refusal,
  relayFiles,
  runCli,
  submissionEnv,
  submitter,
} from '@atmos/relay/test-harness'
import { deletePrefix, goodMailZone, MxSink, ServiceProcess, testRedis } from '@atmos/testkit'
import type { FblIngestService } from '../src/service.ts'
import { headerBlock, headerValue, mxAddress, randomPlcDid, sendToMx, zoneTxt, zoneTxts } from './e2e-helpers.ts'
import { serviceEnv, startService } from './helpers.ts'
import { arf, dsn } from './reports.ts'

// The whole loop on loopback, as in production: one database and one Redis prefix shared
// by a labeler (in this process), a relay (its own process: submission and delivery), and
// fbl-ingest (in this process). One DNS server answers for everyone: the member's domain,
// the pool's DKIM key, the recipients' MX (a sink on 127.0.0.2) and the pool's and bounce
// domain's MX (fbl-ingest on 127.0.0.3, same port: the relay's mxPort is one for all MX).

const MEMBER_DOMAIN = 'member.example'
const RECIPIENT_DOMAIN = 'recipient.example'
const SINK_HOST = '127.0.0.2'
const FBL_HOST = '127.0.0.3'
const DID = randomPlcDid()
const at = (local: string) => `${local}@${RECIPIENT_DOMAIN}`
/** Complaints count only from a configured feedback-loop provider: this one, Yahoo-like. */
const FBL_PROVIDER_DOMAIN = 'arf.mail.yahoo.example'

let labeler: LabelerHarness
let sql: Pool
let prefix: string
let sink: MxSink
let mxPort: number
let fbl: FblIngestService
let relay: ServiceProcess
let submissionPort: number
let credentials: { user: string; pass: string }
/** The DKIM selectors `relay members add` made for the member's domain. */
let memberSelectors: string[]
let labels: LabelSubscriber

before(async () => {
  // The labeler harness makes the one database and Redis prefix; relay and fbl-ingest join them.
  // A placeholder DKIM key until the relay has made the member's; nothing is verified before that.
  labeler = await startLabeler(goodMailZone(MEMBER_DOMAIN, DID), { ATMOS_LOG_LEVEL: 'error' })
  const databaseUrl = labeler.service.ctx.config.database.url
  prefix = labeler.service.ctx.config.redis.prefix
  sql = createPool({ url: databaseUrl, poolMax: 2 })
  const dns = labeler.dns

  sink = new MxSink({ host: SINK_HOST })
  mxPort = await sink.start()
  dns.set(RECIPIENT_DOMAIN, { MX: [{ priority: 10, exchange: `mx.${RECIPIENT_DOMAIN}` }] })
  dns.set(`mx.${RECIPIENT_DOMAIN}`, { A: [SINK_HOST] })
  for (const domain of [BOUNCE_DOMAIN, POOL_DOMAIN]) {
    dns.set(domain, { MX: [{ priority: 10, exchange: `inbound.${POOL_DOMAIN}` }] })
  }
  dns.set(`inbound.${POOL_DOMAIN}`, { A: [FBL_HOST] })
  // The feedback-loop provider's envelope domain: SPF passes for loopback, where its reports come from.
  dns.set(FBL_PROVIDER_DOMAIN, { TXT: ['v=spf1 ip4:127.0.0.0/8 -all'] })

  const files = relayFiles()
  const relayEnv = submissionEnv({
    databaseUrl,
    redisPrefix: prefix,
    files,
    extra: {
      ATMOS_LOG_LEVEL: 'info',
      ATMOS_RELAY_ROLES: 'submission,delivery',
      // Only this labeler's labels count.
      ATMOS_RELAY_SUBMISSION_LABELER_DID: labeler.didKey,
      ATMOS_RELAY_DELIVERY_MX_PORT: String(mxPort),
      // The sinks and fbl-ingest are on loopback, which the relay refuses unless allowed.
      ATMOS_RELAY_DELIVERY_ALLOWED_PRIVATE_NETWORKS: '127.0.0.0/8',
      ATMOS_RELAY_DELIVERY_DNS_SERVERS: '127.0.0.1',
      ATMOS_RELAY_DELIVERY_DNS_PORT: String(dns.port),
      ATMOS_RELAY_DELIVERY_DNS_TIMEOUT: '500ms',
      ATMOS_RELAY_DELIVERY_DNS_TRIES: '1',
      ATMOS_RELAY_DELIVERY_DNS_CACHE_TTL: '0',
      ATMOS_RELAY_DELIVERY_CONNECT_TIMEOUT: '2s',
      ATMOS_RELAY_DELIVERY_GREETING_TIMEOUT: '2s',
      ATMOS_RELAY_DELIVERY_SOCKET_TIMEOUT: '5s',
      ATMOS_RELAY_DELIVERY_RETRY_SCHEDULE: '200ms,500ms',
      ATMOS_RELAY_DELIVERY_RECONCILE_INTERVAL: '1s',
      ATMOS_RELAY_DELIVERY_SHAPING_IDLE_TIMEOUT: '200ms',
    },
  })

  const fblEnv = serviceEnv({
    databaseUrl,
    prefix,
    secretFile: files.tokenSecretFile,
    // Only the pool's KEK, which `relay keys init` below seals the pool key under.
    poolKekFile: files.poolKekFile,
    dnsServer: dns.address,
    extra: {
      ATMOS_FBL_INGEST_SMTP_HOST: FBL_HOST,
      ATMOS_FBL_INGEST_SMTP_PORT: String(mxPort),
      // Small enough for a handful of messages: 4 outcomes count; 1 complaint in 4 warns,
      // 2 suspend. Bounces never suspend here, so that scenario 1 cannot suspend anyone.
      ATMOS_FBL_INGEST_THRESHOLDS_MIN_VOLUME: '4',
      ATMOS_FBL_INGEST_THRESHOLDS_COMPLAINT_WARN: '0.2',
      ATMOS_FBL_INGEST_THRESHOLDS_COMPLAINT_SUSPEND: '0.45',
      ATMOS_FBL_INGEST_THRESHOLDS_BOUNCE_WARN: '1',
      ATMOS_FBL_INGEST_THRESHOLDS_BOUNCE_SUSPEND: '1',
      ATMOS_FBL_INGEST_FEEDBACK_PROVIDERS: JSON.stringify([
        { name: 'yahoo', dkimDomains: [], sendingDomains: [FBL_PROVIDER_DOMAIN] },
      ]),
      ATMOS_FBL_INGEST_DNS_SERVERS: dns.address,
    },
  })

  // The operator's commands as run by hand (the pool DKIM key, the member), the relay's own
  // process and fbl-ingest start side by side: each process start costs seconds.
  relay = new ServiceProcess(new URL('./index.ts', import.meta.resolve('@atmos/relay')), relayEnv)
  const [keys, added, listening] = await Promise.all([
    runCli(['keys', 'init'], relayEnv),
    runCli(['members', 'add', '--did', DID, '--domain', MEMBER_DOMAIN], relayEnv),
    relay.waitForLog((l) => l.msg === 'submission listening (STARTTLS)'),
    startService(fblEnv).then((s) => {
      fbl = s
    }),
  ])
  submissionPort = Number(String(listening.smtp).split(':').pop())
  assert.equal(keys.code, 0, keys.err)
  const poolKey = zoneTxt(keys.out)
  assert.equal(poolKey.name, `pool1._domainkey.${POOL_DOMAIN}`)
  dns.set(poolKey.name, { TXT: [poolKey.strings] })
  assert.equal(added.code, 0, added.err)
  // The domain's two keys, RSA and Ed25519 (RFC 8463), each a TXT record to publish.
  const memberKeys = zoneTxts(added.out).filter((r) => r.name.endsWith(`._domainkey.${MEMBER_DOMAIN}`))
  assert.deepEqual(memberKeys.map((k) => k.name.split('.')[0]).sort(), ['atmos1e', 'atmos1r'], added.out)
  for (const key of memberKeys) dns.set(key.name, { TXT: [key.strings] })
  memberSelectors = memberKeys.map((k) => k.name.split('.')[0]!)
  credentials = {
    user: /^SMTP username: (\S+)$/m.exec(added.out)?.[1] ?? '',
    pass: /^SMTP password: (\S+)$/m.exec(added.out)?.[1] ?? '',
  }

  labels = new LabelSubscriber(labeler.xrpc, 0)
  await labels.opened()
})

after(async () => {
  labels?.close()
  const stopped = await relay?.stop()
  await fbl?.destroy()
  await sink?.close()
  await sql?.end({ timeout: 5 })
  await labeler?.close()
  const redis = testRedis()
  if (prefix) await deletePrefix(redis, prefix)
  redis.disconnect()
  if (stopped) assert.equal(stopped.code, 0, relay.dump())
})

/** Submits through the relay as the member (STARTTLS, AUTH), as a member's PDS would. */
async function submit(to: string[], subject: string) {
  const t = submitter(submissionPort, credentials.user, credentials.pass)
  try {
    return await t.sendMail({
      from: `Member <noreply@${MEMBER_DOMAIN}>`,
      to,
      subject,
      text: 'Your code is 123456.',
    })
  } finally {
    t.close()
  }
}

/** Waits until the sink has accepted the relay's copy for `address`. */
function deliveredTo(address: string, subject: string) {
  return eventually(
    async () => sink.to(address).find((r) => headerValue(r.raw, 'Subject') === subject),
    20_000,
    `delivery to ${address}`,
  )
}

/** The spooled copy for one recipient (the relay keeps one message per recipient). */
async function spooledFor(address: string) {
  const rows = await sql<{ id: string; returnPath: string; state: string }[]>`
    select m.id, m.return_path as "returnPath", r.state
    from messages m join message_recipients r on r.message_id = m.id
    where r.address = ${address}
    order by m.received_at`
  return rows
}

async function memberRow() {
  const [row] = await sql<{ id: number; status: string; statusReason: string | null }[]>`
    select id::int as id, status, status_reason as "statusReason" from members where did = ${DID}`
  assert.ok(row, 'the member exists')
  return row
}

async function eventsFor(memberId: number, type: string) {
  return sql<
    { messageId: string | null; recipient: string | null; status: string | null; feedbackType: string | null }[]
  >`
    select message_id as "messageId", recipient, status, feedback_type as "feedbackType"
    from feedback_events where member_id = ${memberId} and type = ${type} order by id`
}

async function activeSuppression(memberId: number, address: string) {
  const [row] = await sql<{ reason: string; expiresAt: string | null; domain: string | null }[]>`
    select s.reason, s.expires_at as "expiresAt", d.domain from suppressions s left join domains d on d.id = s.domain_id
    where s.member_id = ${memberId} and s.address = ${address} and s.removed_at is null`
  return row
}

/** Every label frame subscribeLabels sent for the member's DID, in sequence order. */
function framesFor(val: string) {
  return labels
    .labels()
    .filter((l) => l.label.uri === DID && l.label.val === val)
    .map((l) => ({ seq: l.seq, neg: l.label.neg === true }))
}

describe('end to end: relay → MX → DSN/ARF → fbl-ingest → suppression, suspension and labels', () => {
  it('the enrolled member is verified from its attestation and holds both labels', async () => {
    labeler.jetstream.commit(DID, {
      operation: 'create',
      collection: ATTESTATION,
      // The published lexicon: one record per domain, under the domain as its key.
      rkey: MEMBER_DOMAIN,
      cid: 'bafye2emember1',
      record: attestationRecord(MEMBER_DOMAIN, memberSelectors),
    })
    const held = await eventually(
      async () => {
        const l = await queryLabels(labeler.xrpc, DID)
        return l.length === 2 ? l : undefined
      },
      20_000,
      'both labels',
    )
    assert.deepEqual(held.map((l) => [l.val, l.neg ?? false]).sort(), [
      ['relay-member', false],
      ['verified-mail-operator', false],
    ])
    await eventually(async () => (framesFor('relay-member').length ? true : undefined), 10_000, 'label frames')
    assert.deepEqual(
      framesFor('relay-member').map((f) => f.neg),
      [false],
    )
  })

  it('a hard bounce at the recipient MX comes back as a DSN, suppresses the address, and the relay refuses it', async () => {
    const subject = 'Verification code (1)'
    const sent = await submit([at('alice'), at('bob')], subject)
    assert.match(sent.response, /^250 /)
    assert.deepEqual([...sent.accepted].sort(), [at('alice'), at('bob')])

    const toAlice = await deliveredTo(at('alice'), subject)
    await deliveredTo(at('bob'), subject)
    const [spooled] = await spooledFor(at('alice'))
    assert.ok(spooled)
    assert.equal(toAlice.mailFrom, spooled.returnPath, 'the MX saw the VERP return path in MAIL FROM')
    assert.match(toAlice.mailFrom, new RegExp(`^b\\+[^@]+@${BOUNCE_DOMAIN.replaceAll('.', '\\.')}$`))
    await eventually(
      async () => ((await spooledFor(at('alice')))[0]?.state === 'delivered' ? true : undefined),
      10_000,
      'the relay to record the delivery',
    )

    // The recipient's MTA finds later that alice does not exist and bounces to the envelope
    // sender, wherever DNS says the bounce domain's mail goes.
    const bounceTo = toAlice.mailFrom
    const bounceMx = await mxAddress(labeler.dns.address, bounceTo.split('@')[1]!)
    assert.equal(bounceMx, FBL_HOST)
    const reply = await sendToMx(
      { host: bounceMx, port: mxPort },
      { from: '', to: [bounceTo] },
      dsn({
        to: bounceTo,
        recipient: at('alice'),
        status: '5.0.0',
        diagnostic: `550 5.1.1 <${at('alice')}>: Recipient address rejected: User unknown in local recipient table`,
        returnedHeaders: headerBlock(toAlice.raw),
      }),
    )
    assert.match(reply, /^250 /)

    const member = await memberRow()
    const [bounce] = await eventually(
      async () => {
        const rows = await eventsFor(member.id, 'hard_bounce')
        return rows.length ? rows : undefined
      },
      15_000,
      'the hard bounce event',
    )
    assert.equal(bounce?.messageId, spooled.id, 'recorded against the message')
    assert.equal(bounce?.recipient, at('alice'))
    assert.equal(bounce?.status, '5.1.1')
    const suppression = await eventually(
      async () => activeSuppression(member.id, at('alice')),
      10_000,
      'the suppression',
    )
    assert.equal(suppression.reason, 'hard_bounce')
    assert.ok(suppression.expiresAt, 'a bounce suppression expires')
    assert.equal(suppression.domain, MEMBER_DOMAIN, 'the domain the bounced message was sent as')
    assert.equal(await activeSuppression(member.id, at('bob')), undefined, 'bob was delivered and stays sendable')

    const refused = await refusal(submit([at('alice')], 'Verification code (2)'))
    assert.equal(refused.responseCode, 550)
    assert.equal(refused.command, 'RCPT TO')
    assert.match(refused.response ?? '', /^550 5\.1\.\d .*suppression list/)
    assert.equal(sink.to(at('alice')).length, 1, 'nothing more reached alice')
    assert.equal((await memberRow()).status, 'active', 'one bounce does not suspend')
  })

  it('complaints past the threshold suspend the member, negate relay-member in subscribeLabels, and the relay refuses', async () => {
    const subject = 'Verification code (3)'
    const sent = await submit([at('carol'), at('dave')], subject)
    assert.deepEqual([...sent.accepted].sort(), [at('carol'), at('dave')])
    const copies = [await deliveredTo(at('carol'), subject), await deliveredTo(at('dave'), subject)]
    await eventually(
      async () => {
        const states = [...(await spooledFor(at('carol'))), ...(await spooledFor(at('dave')))].map((r) => r.state)
        return states.every((s) => s === 'delivered') ? true : undefined
      },
      10_000,
      'carol and dave delivered',
    )
    const member = await memberRow()
    const fblMx = await mxAddress(labeler.dns.address, POOL_DOMAIN)
    const complain = async (copy: (typeof copies)[number], recipient: string) => {
      assert.ok(headerValue(copy.raw, 'X-Atmos-Ref'), 'the relay wrote a reference header')
      const reply = await sendToMx(
        { host: fblMx, port: mxPort },
        { from: `feedback@${FBL_PROVIDER_DOMAIN}`, to: [`fbl@${POOL_DOMAIN}`] },
        arf({ to: `fbl@${POOL_DOMAIN}`, originalRcptTo: recipient, returnedHeaders: headerBlock(copy.raw) }),
      )
      assert.match(reply, /^250 /)
      return eventually(
        async () => {
          const rows = (await eventsFor(member.id, 'complaint')).filter((e) => e.recipient === recipient)
          return rows.length ? rows : undefined
        },
        15_000,
        `the complaint about ${recipient}`,
      )
    }

    // 1 complaint in 4 delivered: past the warning threshold, not the suspension one.
    const [first] = await complain(copies[0]!, at('carol'))
    assert.equal(first?.feedbackType, 'abuse')
    assert.equal(first?.messageId, (await spooledFor(at('carol')))[0]?.id)
    assert.equal((await activeSuppression(member.id, at('carol')))?.reason, 'complaint')
    assert.equal((await memberRow()).status, 'active')

    // 2 in 4: suspended, with the figures as the reason.
    await complain(copies[1]!, at('dave'))
    const suspended = await eventually(
      async () => {
        const m = await memberRow()
        return m.status === 'suspended' ? m : undefined
      },
      15_000,
      'the suspension',
    )
    assert.match(
      suspended.statusReason ?? '',
      /complaint rate 50\.0+ % over 24h \(2 complaints, 4 delivered\) reached the suspend threshold/,
    )
    const [change] = await sql<{ actor: string; fromStatus: string }[]>`
      select actor, from_status as "fromStatus" from member_status_changes
      where member_id = ${member.id} and to_status = 'suspended'`
    assert.deepEqual(change, { actor: 'fbl-ingest', fromStatus: 'active' })

    // memberStatusChanged reaches the labeler: relay-member negated, live on subscribeLabels.
    const frames = await eventually(
      async () => {
        const f = framesFor('relay-member')
        return f.at(-1)?.neg ? f : undefined
      },
      15_000,
      'relay-member negated in subscribeLabels',
    )
    assert.deepEqual(
      frames.map((f) => f.neg),
      [false, true],
    )
    assert.ok(frames[1]!.seq > frames[0]!.seq)
    const now = await queryLabels(labeler.xrpc, DID)
    assert.deepEqual(now.map((l) => [l.val, l.neg ?? false]).sort(), [
      ['relay-member', true],
      ['verified-mail-operator', false],
    ])

    const refused = await refusal(submit([at('erin')], 'Verification code (4)'))
    assert.equal(refused.responseCode, 550)
    assert.equal(refused.command, 'MAIL FROM')
    assert.match(refused.response ?? '', /^550 5\.7\.1 .*suspended/)
    assert.equal(sink.to(at('erin')).length, 0)
  })
})
