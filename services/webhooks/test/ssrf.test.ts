import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { emitEvent } from '@atmos/webhook-events'
import type { Resolve } from '../src/dispatch/safe-post.ts'
import { safePost } from '../src/dispatch/safe-post.ts'
import type { WebhooksService } from '../src/service.ts'
import { addEndpoint, addMember, delivery, type Harness, harness, Receiver, startService, waitFor } from './helpers.ts'

// Without ATMOS_WEBHOOKS_ALLOW_PRIVATE, no request reaches a non-public address, however the
// URL names it. The receiver listens on loopback: any request it gets is a failure of the rule.

describe('webhooks never reach private addresses', () => {
  let h: Harness
  let service: WebhooksService
  const receiver = new Receiver()
  let port: string
  // A name that answers with a public address and a loopback one: a check of the first
  // alone would pass it, and a later resolution (DNS rebinding) could pick the second.
  const names: Record<string, Array<{ address: string; family: number }>> = {
    'rebind.example': [
      { address: '93.184.215.14', family: 4 },
      { address: '127.0.0.1', family: 4 },
    ],
    'mapped.example': [{ address: '::ffff:127.0.0.1', family: 6 }],
  }
  const resolve: Resolve = async (host) => {
    const found = names[host]
    if (found) return found
    // Anything else as the system resolves it (`localhost` → 127.0.0.1 / ::1).
    const { lookup } = await import('node:dns/promises')
    return lookup(host, { all: true })
  }

  before(async () => {
    h = await harness()
    port = new URL(await receiver.start()).port
    service = await startService(h, { allowPrivate: false, retrySchedule: [] }, resolve)
  })
  after(async () => {
    await service?.destroy()
    await receiver.stop()
    await h?.close()
  })

  for (const target of ['localhost', '127.0.0.1', 'rebind.example', 'mapped.example', '[::1]']) {
    it(`refuses ${target}`, async () => {
      const member = await addMember(h.db)
      await addEndpoint(h, member.id, `http://${target}:${port}/hook`)
      const id = await emitEvent(h.db, { memberId: member.id, type: 'message.delivered', data: {} })
      const row = await waitFor('the refused delivery', async () => {
        const d = await delivery(h.db, id!)
        return d?.state === 'failed' ? d : undefined
      })
      assert.match(row.last_error ?? '', /^refused: .* is not a public address/)
      assert.equal(receiver.received.length, 0)
    })
  }

  it('refuses the cloud metadata address, a CGNAT one and a ULA without connecting', async () => {
    for (const ip of ['169.254.169.254', '100.64.1.1', '[fd00:ec2::254]', '10.1.2.3', '0.0.0.0']) {
      const r = await safePost(`https://${ip}/`, {}, '{}', { timeoutMs: 1000, allowHttp: false, allowPrivate: false })
      assert.equal(r.ok, false)
      assert.match((r as { error: string }).error, /not a public address/, ip)
    }
  })

  it('lets a public address through the check (whatever the connection then does)', async () => {
    // No route out may exist here: the attempt may time out or be unreachable, but it is not refused.
    const r = await safePost('https://public.example/', {}, '{}', {
      timeoutMs: 300,
      allowHttp: false,
      allowPrivate: false,
      resolve: async () => [{ address: '1.1.1.1', family: 4 }],
    })
    assert.equal(r.ok, false)
    assert.doesNotMatch((r as { error: string }).error, /^refused/)
  })

  it('refuses http:// unless allowed', async () => {
    const r = await safePost('http://example.com/', {}, '{}', {
      timeoutMs: 1000,
      allowHttp: false,
      allowPrivate: false,
    })
    assert.match((r as { error: string }).error, /only https/)
  })
})
