import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createDkimKey } from '@atmos/dkim'
import { issueApiKey } from '@atmos/enrolment'
import { loadKeyring } from '@atmos/secrets'
import type { ServiceProcess } from '@atmos/testkit'
import { authenticate } from 'mailauth'
import type { AddedMember } from '../src/members/store.ts'
import { type DeliveryWorld, eventually, startDeliveryWorld } from './delivery-helpers.ts'
import {
  createMember,
  dkimZone,
  dnsResolverFor,
  POOL_DOMAIN,
  poolPublicKey,
  relayFiles,
  submissionEnv,
} from './helpers.ts'

// The send API end to end in a relay process of its own (submission and delivery roles, as
// the local stack runs it): a request becomes mail at a loopback MX, signed by the member's
// domain and the pool, and an idempotent retry is delivered once.

describe('the send API, from a request to the recipient MX', () => {
  let world: DeliveryWorld
  let relay: ServiceProcess
  let alice: AddedMember
  let key: string
  let base: string

  before(async () => {
    world = await startDeliveryWorld(
      'send-api-e2e',
      { mx: '127.0.0.2' },
      {
        'dest.example': { MX: [{ exchange: 'mx.dest.example', priority: 10 }] },
        'mx.dest.example': { A: ['127.0.0.2'] },
      },
    )
    const files = relayFiles()
    await createDkimKey(world.sql, loadKeyring(files.poolKekFile), {
      memberId: null,
      domain: POOL_DOMAIN,
      selector: 'pool1',
    })
    alice = await createMember({ sql: world.sql, keyring: loadKeyring(files.kekFile) }, 'member.example')
    key = (await issueApiKey(world.sql, { did: alice.did, domain: alice.domain })).key
    for (const [name, records] of Object.entries(dkimZone(alice))) world.dns.set(name, records)
    world.dns.set('pool1._domainkey.pool.example', { TXT: [`v=DKIM1; k=rsa; p=${await poolPublicKey(world.sql)}`] })
    relay = await world.startProcess({
      ...world.env(),
      ...submissionEnv({ databaseUrl: world.db.url, redisPrefix: world.prefix, files }),
      ATMOS_LOG_LEVEL: 'info',
      ATMOS_RELAY_ROLES: 'submission,delivery',
      ATMOS_RELAY_API_ENABLED: 'true',
      ATMOS_RELAY_API_PORT: '0',
    })
    const listening = await relay.waitForLog((l) => l.msg === 'send API listening')
    base = String(listening.api)
  })
  after(async () => {
    await world?.close()
  })

  const send = (to: string, idempotencyKey: string) =>
    fetch(`${base}/v1/send`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${key}`,
        'idempotency-key': idempotencyKey,
      },
      body: JSON.stringify({
        from: { name: 'Alice', address: 'alice@member.example' },
        to,
        subject: 'Your code',
        text: 'Your code is 123456\n',
        category: 'login-link',
      }),
    })

  it('delivers what the API accepted, with three passing signatures, and a retried request once', async () => {
    const first = await send('bob@dest.example', 'retry-me')
    assert.equal(first.status, 200)
    const body = (await first.json()) as { accepted: Array<{ recipient: string; messageId: string }> }
    assert.deepEqual(
      body.accepted.map((a) => a.recipient),
      ['bob@dest.example'],
    )
    const sink = world.sinks.mx!
    const delivered = await eventually(async () => sink.to('bob@dest.example')[0], 30_000, 'delivery to the sink')
    const auth = await authenticate(Buffer.from(delivered.raw), {
      ip: '198.51.100.7',
      helo: 'relay.pool.example',
      sender: delivered.mailFrom,
      mta: 'mx.dest.example',
      resolver: dnsResolverFor(world.dns.address) as never,
    })
    assert.deepEqual(
      auth.dkim.results.map((r) => [r.signingDomain, r.selector, r.status.result]),
      [
        ['member.example', 'atmos1r', 'pass'],
        ['member.example', 'atmos1e', 'pass'],
        [POOL_DOMAIN, 'pool1', 'pass'],
      ],
    )
    assert.doesNotMatch(delivered.raw, /^List-Unsubscribe:/im, 'login-link is transactional')

    const retry = await send('bob@dest.example', 'retry-me')
    assert.equal(retry.status, 200)
    assert.deepEqual(await retry.json(), body)
    // The retry spooled nothing: the one copy is delivered and no other exists to be.
    const [{ n }] = (await world.sql`
      select count(*)::int as n from message_recipients where address = 'bob@dest.example'`) as unknown as [
      { n: number },
    ]
    assert.equal(n, 1)
    await eventually(
      async () => {
        const [row] = await world.sql<{ state: string }[]>`
          select state from message_recipients where address = 'bob@dest.example'`
        return row?.state === 'delivered' ? true : undefined
      },
      30_000,
      'the delivery recorded',
    )
    assert.equal(sink.to('bob@dest.example').length, 1)
  })
})
