import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { unlinkSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { inboundMessages, messages, quarantinedReports } from '@atmos/db'
import { eq } from 'drizzle-orm'
import { dkimVerify } from 'mailauth'
import type { FblIngestService } from '../src/service.ts'
import { deliverProcessed, type Harness, harness, POOL_DOMAIN, startService } from './helpers.ts'

// Only mail people sent to an operator mailbox is forwarded, only when its From domain's
// DMARC did not fail at receipt, and at most so many an hour: the pool signs every forward.

let h: Harness
let service: FblIngestService
let port: number

const FORWARDS_PER_HOUR = 2

before(async () => {
  h = await harness('fbl-forward-policy')
  // fbl-ingest is given the pool's KEK only: the relay's, which opens members' keys, is not even there.
  unlinkSync(h.relayKekFile)
  assert.ok(!Object.values(h.env).includes(h.relayKekFile))
  service = await startService({ ...h.env, ATMOS_FBL_INGEST_FORWARDS_PER_HOUR: String(FORWARDS_PER_HOUR) })
  port = service.ctx.listener!.address!.port
})
after(async () => {
  await service?.destroy()
  await h?.close()
})

function deliver(to: string, message: string, from: string) {
  return deliverProcessed(h, port, to, message, from)
}

async function reasonOf(inboundId: number): Promise<string | undefined> {
  const [q] = await h.db.select().from(quarantinedReports).where(eq(quarantinedReports.inboundId, inboundId))
  return q?.reason
}

const letter = (from: string, to: string, subject: string) =>
  [`From: <${from}>`, `To: <${to}>`, `Subject: ${subject}`, 'Message-ID: <x@y>', '', 'Hello.', ''].join('\r\n')

describe('what fbl-ingest forwards', () => {
  it('a letter to fbl@ or a bounce address is kept for the operator, never forwarded', async () => {
    const row = await deliver(
      `fbl@${POOL_DOMAIN}`,
      letter('a@elsewhere.example', `fbl@${POOL_DOMAIN}`, 'hi'),
      'a@elsewhere.example',
    )
    assert.equal(row.state, 'quarantined')
    assert.equal(row.forwardedMessageId, null)
    assert.equal(row.auth, null, 'not an operator mailbox: not even checked')
    assert.match((await reasonOf(row.id)) ?? '', /not sent to an operator mailbox/)
  })

  it('a letter to postmaster@ whose From domain fails DMARC (p=reject, SPF -all, unsigned) is kept; the check asked only the test DNS', async () => {
    h.dns.set('forged.example', { TXT: ['v=spf1 -all'] })
    h.dns.set('_dmarc.forged.example', { TXT: ['v=DMARC1; p=reject'] })
    const row = await deliver(
      `postmaster@${POOL_DOMAIN}`,
      letter('ceo@forged.example', `postmaster@${POOL_DOMAIN}`, 'urgent'),
      'ceo@forged.example',
    )
    assert.equal(row.state, 'quarantined')
    assert.equal(row.auth?.dmarc, 'fail')
    assert.equal(row.auth?.fromDomain, 'forged.example')
    assert.equal(row.auth?.spf, 'fail')
    assert.match((await reasonOf(row.id)) ?? '', /^DMARC fail for its From domain forged\.example/)
    assert.ok(h.dns.queries.some((q) => q.name.toLowerCase() === '_dmarc.forged.example'))
  })

  it('a letter to abuse@ that passes DMARC through SPF for the client IP is forwarded', async () => {
    h.dns.set('honest.example', { TXT: ['v=spf1 ip4:127.0.0.1 -all'] })
    h.dns.set('_dmarc.honest.example', { TXT: ['v=DMARC1; p=reject'] })
    const row = await deliver(
      `abuse@${POOL_DOMAIN}`,
      letter('someone@honest.example', `abuse@${POOL_DOMAIN}`, 'your pool'),
      'someone@honest.example',
    )
    assert.equal(row.auth?.dmarc, 'pass')
    assert.equal(row.state, 'forwarded')
    // Signed as the pool with the key the pool KEK opens, without the relay's KEK.
    const [msg] = await h.db.select().from(messages).where(eq(messages.id, row.forwardedMessageId!))
    const verified = await dkimVerify(msg!.body, {
      resolver: async (name: string, type: string) => {
        if (type === 'TXT' && name === `${h.poolKey.selector}._domainkey.${POOL_DOMAIN}`) return [[h.poolKey.txt]]
        throw Object.assign(new Error(`no ${type} ${name}`), { code: 'ENOTFOUND' })
      },
    })
    assert.deepEqual(
      verified.results.map((r) => [r.signingDomain, r.status.result]),
      [[POOL_DOMAIN, 'pass']],
    )
  })

  it(`past ${FORWARDS_PER_HOUR} forwards an hour, operator mail is kept, not sent`, async () => {
    // Replies forwarded to members' forward-to addresses have limits of their own (per domain):
    // they take nothing from the operator's budget.
    for (let i = 0; i < FORWARDS_PER_HOUR; i++) {
      await h.db.insert(inboundMessages).values({
        mailFrom: 'a@sender.example',
        rcptTo: ['support@member.example'],
        size: 1,
        raw: Buffer.from('x'),
        kind: 'reply',
        state: 'forwarded',
        forwardedMessageId: randomUUID(),
        processedAt: new Date(),
      })
    }
    const outcomes: string[] = []
    for (let i = 0; i < FORWARDS_PER_HOUR + 1; i++) {
      const row = await deliver(
        `abuse@${POOL_DOMAIN}`,
        letter(`p${i}@nopolicy.example`, `abuse@${POOL_DOMAIN}`, `note ${i}`),
        `p${i}@nopolicy.example`,
      )
      assert.equal(row.auth?.dmarc, 'none')
      outcomes.push(row.state)
      if (row.state === 'quarantined') {
        assert.match((await reasonOf(row.id)) ?? '', /^forward limit of 2 an hour reached/)
      }
    }
    // One forward went out in the test before: one more fits, the rest are kept.
    assert.deepEqual(outcomes, ['forwarded', 'quarantined', 'quarantined'])
    const forwards = await h.db.select({ id: messages.id }).from(messages)
    assert.equal(forwards.length, FORWARDS_PER_HOUR)
  })
})
