import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import {
  ATTESTATION,
  attestationRecord,
  eventually,
  type LabelerHarness,
  queryLabels,
  startLabeler,
} from '@atmos/labeler/test-harness'
import { goodMailZone, ServiceProcess, TEST_REDIS_URL } from '@atmos/testkit'

const cli = new URL('../src/cli.ts', import.meta.url)
const DOMAINS = ['steady.example', 'weakened.example', 'flaky.example'] as const
const DIDS = DOMAINS.map((_, i) => `did:plc:runonce${i}oun6zhxrhs64oiz`)

let h: LabelerHarness

before(async () => {
  h = await startLabeler(Object.assign({}, ...DOMAINS.map((d, i) => goodMailZone(d, DIDS[i]!))))
})
after(async () => {
  await h?.close()
})

function runOnce(args: string[]): Promise<{ code: number | null; out: string }> {
  const proc = new ServiceProcess(
    cli,
    {
      ATMOS_DATABASE_URL: h.service.ctx.config.database.url,
      ATMOS_REDIS_URL: TEST_REDIS_URL,
      ATMOS_REDIS_PREFIX: h.service.ctx.config.redis.prefix,
      ATMOS_SCHEDULER_VERIFY_RATE: '100',
    },
    ['run-once', ...args],
  )
  return proc.exited.then(({ code }) => ({ code, out: proc.logs.map((l) => l.msg).join('\n') }))
}

it('scheduler run-once re-verifies everything now and prints passed, negated and temporary', async () => {
  DOMAINS.forEach((domain, i) => {
    h.jetstream.commit(DIDS[i]!, {
      operation: 'create',
      collection: ATTESTATION,
      rkey: domain,
      cid: `bafyrun${i}`,
      record: attestationRecord(domain),
    })
  })
  for (const did of DIDS) await eventually(async () => (await queryLabels(h.xrpc, did))[0])

  h.dns.set('_dmarc.weakened.example', { TXT: ['v=DMARC1; p=none'] })
  h.dns.behave('_dmarc.flaky.example', 'servfail')
  const { code, out } = await runOnce(['--timeout', '60s'])
  assert.equal(code, 0, out)
  const row = (name: string) => Number(new RegExp(`^${name}\\s+(\\d+)$`, 'm').exec(out)?.[1])
  assert.equal(row('passed'), 1, out)
  assert.equal(row('failed'), 1, out)
  assert.equal(row('temporary'), 1, out)
  assert.equal(row('unfinished'), 0, out)
  assert.equal(row('labels negated'), 1, out)
  assert.equal(row('labels issued'), 0, out)
  assert.match(out, /fail\s+weakened\.example/)
  assert.match(out, /temperror\s+flaky\.example/)
  // The API's page cache drops the page when it hears of the negation (LISTEN/NOTIFY), a moment after the commit.
  await eventually(async () => ((await queryLabels(h.xrpc, DIDS[1]!))[0]?.neg === true ? true : undefined))
  assert.equal((await queryLabels(h.xrpc, DIDS[2]!))[0]?.neg, undefined, 'a temporary error never negates')
})

it('scheduler run-once refuses a bad timeout with a usage error', async () => {
  const { code, out } = await runOnce(['--timeout', 'soon'])
  assert.equal(code, 64)
  assert.equal(out, '')
})
