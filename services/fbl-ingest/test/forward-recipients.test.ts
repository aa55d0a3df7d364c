import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { domains, inboundForwards, inboundMessages, suppressions } from '@atmos/db'
import { eq } from 'drizzle-orm'
import { srsAddress } from '../src/forwarding/srs.ts'
import type { FblIngestService } from '../src/service.ts'
import {
  addDomain,
  addMember,
  BOUNCE_DOMAIN,
  type Harness,
  harness,
  POOL_DOMAIN,
  smtpDialog,
  startService,
  type TestMember,
} from './helpers.ts'

// Port 25 for members' domains: an address at an enrolled domain is accepted only while the
// domain has a forward-to (and it is not suppressed, and the domain's hour is not used up);
// everything else about the pool's policy stands: never an open relay.

let h: Harness
let service: FblIngestService
let port: number
let member: TestMember
let bare: TestMember
let pending: TestMember

before(async () => {
  h = await harness('fbl-fwd-rcpt')
  service = await startService({
    ...h.env,
    ATMOS_FBL_INGEST_ROLES: 'smtp',
    // Each test sees the database as it is now.
    ATMOS_FBL_INGEST_FORWARDING_CACHE_TTL: '0',
    ATMOS_FBL_INGEST_FORWARDING_PER_DOMAIN_PER_HOUR: '2',
  })
  port = service.ctx.listener!.address!.port
  member = await addMember(h.db)
  await h.db.update(domains).set({ forwardTo: 'owner@inbox.example' }).where(eq(domains.id, member.domainId))
  bare = await addDomain(h.db, member, `bare-${member.domain}`)
  pending = await addDomain(h.db, member, `pending-${member.domain}`)
  await h.db
    .update(domains)
    .set({ status: 'pending', forwardTo: 'owner@inbox.example' })
    .where(eq(domains.id, pending.domainId))
})
after(async () => {
  await service?.destroy()
  await h?.close()
})

async function rcpt(...addresses: string[]): Promise<string[]> {
  const replies = await smtpDialog(port, [
    'EHLO client.example',
    'MAIL FROM:<someone@sender.example>',
    ...addresses.map((a) => `RCPT TO:${a}`),
  ])
  return replies.slice(2)
}

describe('port 25 for members’ domains', () => {
  it('accepts an address at an enrolled domain that has a forward-to, in any case', async () => {
    assert.match((await rcpt(`<support@${member.domain}>`))[0]!, /^250 /)
    assert.match((await rcpt(`<Support@${member.domain.toUpperCase()}>`))[0]!, /^250 /)
  })

  it('answers 550 5.1.1 for an enrolled domain without forward-to, and for a bad local part there', async () => {
    assert.match((await rcpt(`<support@${bare.domain}>`))[0]!, /^550 5\.1\.1 /)
    for (const r of [
      `<victim%elsewhere.example@${member.domain}>`,
      `<elsewhere.example!victim@${member.domain}>`,
      `<a/b@${member.domain}>`,
    ]) {
      assert.match((await rcpt(r))[0]!, /^550 5\.1\.1 /, r)
    }
    // smtp-server refuses a quoted local part as bad syntax before our policy sees it; else ours refuses.
    assert.match((await rcpt(`<"victim@elsewhere.example"@${member.domain}>`))[0]!, /^(550 5\.1\.1|501) /)
  })

  it('keeps refusing unknown domains, pending ones, subdomains and source routes with 550 5.7.1', async () => {
    for (const r of [
      '<someone@elsewhere.example>',
      `<support@${pending.domain}>`,
      `<support@sub.${member.domain}>`,
      `<@${member.domain}:victim@elsewhere.example>`,
      `<@${POOL_DOMAIN},@${member.domain}:victim@elsewhere.example>`,
      `<support@${member.domain}.elsewhere.example>`,
    ]) {
      assert.match((await rcpt(r))[0]!, /^550 5\.7\.1 /, r)
    }
  })

  it('accepts a suspended domain’s replies (the member’s own mail), not a suppressed forward-to', async () => {
    await h.db.update(domains).set({ status: 'suspended' }).where(eq(domains.id, member.domainId))
    assert.match((await rcpt(`<support@${member.domain}>`))[0]!, /^250 /)
    await h.db.update(domains).set({ status: 'active' }).where(eq(domains.id, member.domainId))
    const [s] = await h.db
      .insert(suppressions)
      .values({ memberId: member.id, address: 'owner@inbox.example', reason: 'hard_bounce' })
      .returning()
    assert.match((await rcpt(`<support@${member.domain}>`))[0]!, /^550 5\.1\.1 /)
    await h.db.update(suppressions).set({ removedAt: new Date() }).where(eq(suppressions.id, s!.id))
    assert.match((await rcpt(`<support@${member.domain}>`))[0]!, /^250 /)
  })

  it('defers a domain past its forwards of the hour with 450 4.7.1', async () => {
    const other = await addMember(h.db)
    await h.db.update(domains).set({ forwardTo: 'o@inbox.example' }).where(eq(domains.id, other.domainId))
    for (const _ of [1, 2]) {
      const [extra] = await h.db
        .insert(inboundMessages)
        .values({ mailFrom: 'x@y.example', rcptTo: ['a@b.example'], size: 1, raw: Buffer.from('x') })
        .returning({ id: inboundMessages.id })
      await h.db.insert(inboundForwards).values({
        inboundId: extra!.id,
        memberId: other.id,
        domainId: other.domainId,
        recipient: `a@${other.domain}`,
        forwardTo: 'o@inbox.example',
        state: 'forwarded',
      })
    }
    assert.match((await rcpt(`<support@${other.domain}>`))[0]!, /^450 4\.7\.1 /)
    // Other domains are not held back by it.
    assert.match((await rcpt(`<support@${member.domain}>`))[0]!, /^250 /)
  })

  it('takes the pool’s own mailboxes and members’ domains in separate transactions (452 4.5.3)', async () => {
    const [first, second] = await rcpt(`<support@${member.domain}>`, `<postmaster@${POOL_DOMAIN}>`)
    assert.match(first!, /^250 /)
    assert.match(second!, /^452 4\.5\.3 /)
    const [a, b] = await rcpt(`<postmaster@${POOL_DOMAIN}>`, `<support@${member.domain}>`)
    assert.match(a!, /^250 /)
    assert.match(b!, /^452 4\.5\.3 /)
  })

  it('accepts an SRS address only when its hash and timestamp verify', async () => {
    const key = { secret: h.secret, bounceDomain: BOUNCE_DOMAIN }
    const good = srsAddress(key, 'someone@sender.example')!
    assert.match((await rcpt(`<${good}>`))[0]!, /^250 /)
    assert.match((await rcpt(`<${good.toUpperCase()}>`))[0]!, /^250 /)
    const old = srsAddress(key, 'someone@sender.example', Date.now() - 30 * 86_400_000)!
    const forged = srsAddress({ ...key, secret: 'not the pool secret' }, 'someone@sender.example')!
    for (const r of [old, forged, good.replace('someone', 'another'), good.replace(BOUNCE_DOMAIN, POOL_DOMAIN)]) {
      assert.match((await rcpt(`<${r}>`))[0]!, /^550 5\.7\.1 /, r)
    }
  })
})
