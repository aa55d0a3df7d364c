import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { createDkimKey } from '@atmos/dkim'
import type { BaseContext } from '@atmos/runtime'
import { closeBaseContext } from '@atmos/runtime'
import { loadKeyring } from '@atmos/secrets'
import type { RelayConfig } from '../src/config.ts'
import type { AddedMember } from '../src/members/store.ts'
import { Submission } from '../src/submission/index.ts'
import { type DeliveryWorld, eventually, startDelivery, startDeliveryWorld } from './delivery-helpers.ts'
import {
  createMember,
  POOL_DOMAIN,
  poolPublicKey,
  relayContext,
  relayFiles,
  SmtpDialog,
  submissionEnv,
  submitRaw,
} from './helpers.ts'

// What is signed is what is sent: a message goes through the real relay (submission, spool,
// delivery over SMTP) to a loopback MX, and the bytes the MX received are compared with the
// spooled `messages.body`, then verified by a DKIM verifier that is not mailauth. Nothing may
// change a byte after signing: nodemailer's DataStream only stuffs dots on the way out, and
// the receiving smtp-server removes them again.

const VERIFIER = fileURLToPath(new URL('../../../packages/dkim/test/dkimverify.py', import.meta.url))

describe('relay: the bytes the MX receives are the bytes that were signed', () => {
  let world: DeliveryWorld
  let ctx: BaseContext<RelayConfig>
  let submission: Submission
  let stopDelivery: () => Promise<void>
  let alice: AddedMember
  let port: number

  before(async () => {
    world = await startDeliveryWorld(
      'relay-bytes',
      { a: '127.0.0.2' },
      {
        'mx-a.sinks.test': { A: ['127.0.0.2'] },
        'dest.example': { MX: [{ priority: 10, exchange: 'mx-a.sinks.test' }] },
      },
    )
    const files = relayFiles()
    await createDkimKey(world.sql, loadKeyring(files.poolKekFile), {
      memberId: null,
      domain: POOL_DOMAIN,
      selector: 'pool1',
    })
    alice = await createMember({ sql: world.sql, keyring: loadKeyring(files.kekFile) }, 'member.example')
    ctx = relayContext(submissionEnv({ databaseUrl: world.db.url, redisPrefix: world.prefix, files }))
    submission = new Submission(ctx)
    await submission.start()
    port = submission.addresses.starttls!.port
    stopDelivery = (await startDelivery(world.env())).stop
  })
  after(async () => {
    await stopDelivery?.()
    await submission?.stop()
    if (ctx) await closeBaseContext(ctx)
    await world?.close()
  })

  /** The spooled body of each copy, and what the MX received for that recipient, once delivered. */
  async function spooledAndReceived(recipients: string[]): Promise<Array<{ spooled: Buffer; received: Buffer }>> {
    const sink = world.sinks.a!
    return Promise.all(
      recipients.map(async (to) => {
        const received = await eventually(async () => sink.to(to)[0], 15_000, `delivery to ${to}`)
        const [row] = await world.sql<{ body: Buffer }[]>`
          select m.body from messages m join message_recipients r on r.message_id = m.id where r.address = ${to}`
        return { spooled: row!.body, received: Buffer.from(received.raw, 'utf8') }
      }),
    )
  }

  async function pythonVerify(messages: Buffer[]): Promise<boolean[][]> {
    const records = {
      ...Object.fromEntries(alice.keys.map((k) => [k.txtName, k.txt])),
      [`pool1._domainkey.${POOL_DOMAIN}`]: `v=DKIM1; k=rsa; p=${await poolPublicKey(world.sql)}`,
    }
    const verdicts = await new Promise<Array<Array<{ pass: boolean }>>>((resolve, reject) => {
      const child = execFile('/usr/bin/python3', [VERIFIER, JSON.stringify(records)], (err, stdout, stderr) =>
        err ? reject(new Error(stderr || err.message)) : resolve(JSON.parse(stdout)),
      )
      child.stdin!.end(JSON.stringify(messages.map((m) => m.toString('base64'))))
    })
    return verdicts.map((v) => v.map((r) => r.pass))
  }

  it('a message with dot lines, 998-octet lines, folded fields and UTF-8 arrives byte for byte, all three signatures (RSA, Ed25519, pool) passing', async () => {
    const body = ['Hello,', '', '.', '..two dots', '.leading dot', 'x'.repeat(998), 'Ünïcödé — ✓', '', ''].join('\r\n')
    const raw = [
      'From: "Alice (Billing)" <alice@member.example>',
      'To: one@dest.example,',
      ' two@dest.example',
      'Subject: =?utf-8?q?R=C3=A9sum=C3=A9?=',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 8bit',
      '',
      body,
    ].join('\r\n')
    const info = await submitRaw(
      port,
      alice,
      { from: 'alice@member.example', to: ['one@dest.example', 'two@dest.example'] },
      raw,
    )
    assert.match(info.response, /^250 /)
    const copies = await spooledAndReceived(['one@dest.example', 'two@dest.example'])
    for (const { spooled, received } of copies) {
      assert.ok(received.equals(spooled), `received differs from spooled:\n${received}\n---\n${spooled}`)
      assert.ok(spooled.toString('latin1').endsWith('\r\n'))
      assert.ok(!/[^\r]\n|\r[^\n]/.test(spooled.toString('latin1')), 'no bare CR or LF in the spool')
    }
    assert.deepEqual(await pythonVerify(copies.map((c) => c.received)), [
      [true, true, true],
      [true, true, true],
    ])
  })

  it('a body written with bare LFs (a script) is spooled as CRLF and arrives as spooled', async () => {
    const { dialog } = await SmtpDialog.open(port)
    try {
      await dialog.send('EHLO c.example')
      await dialog.starttls()
      await dialog.send('EHLO c.example')
      await dialog.login(alice.username, alice.password)
      await dialog.send('MAIL FROM:<alice@member.example>')
      await dialog.send('RCPT TO:<three@dest.example>')
      await dialog.send('DATA')
      const reply = await dialog.send(
        'From: alice@member.example\r\nSubject: lf\r\n\r\nfirst\nsecond\n..dotted\n\nlast\r\n.',
      )
      assert.match(reply, /^250 /)
    } finally {
      dialog.close()
    }
    const [copy] = await spooledAndReceived(['three@dest.example'])
    assert.ok(copy!.received.equals(copy!.spooled))
    assert.ok(copy!.spooled.toString().endsWith('\r\n\r\nfirst\r\nsecond\r\n.dotted\r\n\r\nlast\r\n'))
    assert.deepEqual(await pythonVerify([copy!.received]), [[true, true, true]])
  })
})
