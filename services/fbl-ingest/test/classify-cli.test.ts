import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runCli } from '@atmos/testkit'
import { FEEDBACK_SENDER_ID, FIXTURE_POOL, MEMBER_DID, MESSAGE_IDS, POOL_DOMAIN } from './fixtures/identity.ts'

// `fbl-ingest classify FILE...` run as the operator runs it: its own process, real files.

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

const run = (args: string[], env: Record<string, string>) => runCli(cli, args, { ATMOS_CONFIG: '', ...env })

const lines = (out: string) =>
  out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)

describe('fbl-ingest classify', () => {
  let env: Record<string, string>

  before(() => {
    const dir = mkdtempSync(join(tmpdir(), 'atmos-fbl-cli-'))
    const secretFile = join(dir, 'token.secret')
    writeFileSync(secretFile, `${FIXTURE_POOL.secret}\n`, { mode: 0o600 })
    env = {
      ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE: secretFile,
      ATMOS_FBL_INGEST_POOL_BOUNCE_DOMAIN: FIXTURE_POOL.bounceDomain,
      ATMOS_FBL_INGEST_POOL_VERP_PREFIX: FIXTURE_POOL.prefix,
      ATMOS_FBL_INGEST_POOL_FEEDBACK_SENDER_ID: FEEDBACK_SENDER_ID,
      ATMOS_FBL_INGEST_POOL_DOMAIN: POOL_DOMAIN,
    }
  })

  it('prints one JSON line per recipient, with kind, status, reason, hardness and attribution', async () => {
    const r = await run(
      ['classify', fixture('dsn-exim.eml'), fixture('arf-gmail.eml'), fixture('operator-mail.eml')],
      env,
    )
    assert.equal(r.code, 0, r.err)
    assert.equal(r.err, '')
    const [full, spam, arf, other, ...more] = lines(r.out)
    assert.equal(more.length, 0)
    assert.deepEqual(
      { ...full, attribution: undefined, diagnostic: undefined },
      {
        file: fixture('dsn-exim.eml'),
        kind: 'dsn',
        report: true,
        address: 'full.box@exim-host.example',
        action: 'failed',
        status: '5.2.2',
        replyCode: '552',
        reason: 'mailboxfull',
        hard: false,
        remoteMta: 'mail.exim-host.example',
        attribution: undefined,
        diagnostic: undefined,
      },
    )
    assert.deepEqual(full!.attribution, spam!.attribution)
    assert.deepEqual(
      (full!.attribution as { kind: string }[]).map((h) => h.kind),
      ['feedback-id', 'reference', 'verp', 'verp'],
    )
    assert.equal(spam!.reason, 'spamdetected')
    assert.equal(spam!.status, '5.7.1')
    assert.equal(arf!.kind, 'arf')
    assert.equal(arf!.feedbackType, 'abuse')
    assert.equal(arf!.address, 'reader.one@gmail.example')
    assert.deepEqual((arf!.attribution as { did?: string }[])[0], {
      kind: 'member-did',
      did: MEMBER_DID,
      source: 'returned-headers',
      verified: false,
    })
    assert.deepEqual(
      (arf!.attribution as { kind: string; messageId?: string }[]).filter((h) => h.kind === 'reference'),
      [{ kind: 'reference', messageId: MESSAGE_IDS.gmail, source: 'returned-headers', verified: true }],
    )
    assert.deepEqual(other, {
      file: fixture('operator-mail.eml'),
      kind: 'other',
      report: false,
      attribution: [],
      notes: ['not a delivery or feedback report'],
    })
  })

  it('exits 66 with a clear message for a missing file, after classifying the others', async () => {
    const missing = join(tmpdir(), 'atmos-no-such-bounce.eml')
    const r = await run(['classify', missing, fixture('plain-qmail.eml')], env)
    assert.equal(r.code, 66)
    assert.match(r.err, new RegExp(`cannot read ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such file`))
    const [only, ...more] = lines(r.out)
    assert.equal(more.length, 0)
    assert.equal(only!.kind, 'plain_bounce')
    assert.equal(only!.hard, true)
  })

  it('exits 64 with the usage when no file is given', async () => {
    const r = await run(['classify'], env)
    assert.equal(r.code, 64)
    assert.match(r.err, /usage: fbl-ingest classify FILE/)
    assert.equal(r.out, '')
  })

  it('says so when the token secret is missing, and gives only the unsigned hints', async () => {
    const r = await run(['classify', fixture('dsn-postfix.eml')], {
      ...env,
      ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE: join(tmpdir(), 'atmos-no-such-secret'),
    })
    assert.equal(r.code, 0)
    assert.match(r.err, /tokens are not verified/)
    assert.doesNotMatch(r.err, new RegExp(FIXTURE_POOL.secret))
    const [line] = lines(r.out)
    assert.deepEqual(
      (line!.attribution as { kind: string }[]).map((h) => h.kind),
      ['dkim-domain'],
    )
    assert.equal(line!.hard, true)
  })
})
