import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import SMTPConnection from 'nodemailer/lib/smtp-connection'
import type { AddedMember } from '../src/members/store.ts'
import { createMember, type Harness, rfc822, SmtpDialog, startSubmission } from './helpers.ts'

// REQUIRETLS (RFC 8689) at submission: advertised after STARTTLS, refused in plain text,
// and recorded on the spooled message (messages.require_tls) for delivery to honour.

let h: Harness
let alice: AddedMember

before(async () => {
  h = await startSubmission()
  alice = await createMember(h, 'member.example')
})

after(async () => {
  await h?.close()
})

/** Submits one message over STARTTLS, with or without REQUIRETLS on MAIL FROM; returns the spooled id. */
async function submit(requireTls: boolean): Promise<string> {
  const connection = new SMTPConnection({
    host: '127.0.0.1',
    port: h.port,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    logger: false,
  })
  await new Promise<void>((resolve, reject) => {
    connection.once('error', reject)
    connection.connect(() => resolve())
  })
  try {
    await new Promise<void>((resolve, reject) =>
      connection.login({ user: alice.username, pass: alice.password }, (err) => (err ? reject(err) : resolve())),
    )
    const raw = rfc822({ From: 'alice@member.example', To: 'x@dest.example', Subject: 's' }, 'Hello.\r\n')
    const info = await new Promise<{ response?: string }>((resolve, reject) =>
      connection.send(
        { from: 'alice@member.example', to: ['x@dest.example'], requireTLSExtensionEnabled: requireTls },
        raw,
        (err, info) => (err ? reject(err) : resolve(info)),
      ),
    )
    const id = /queued as ([0-9a-f-]{36})/.exec(info.response ?? '')?.[1]
    assert.ok(id, info.response)
    return id
  } finally {
    connection.quit()
  }
}

async function requireTlsOf(id: string): Promise<boolean | undefined> {
  const [row] = await h.sql<{ require_tls: boolean }[]>`select require_tls from messages where id = ${id}`
  return row?.require_tls
}

describe('REQUIRETLS at submission', () => {
  it('flags a message whose MAIL FROM carried REQUIRETLS', async () => {
    assert.equal(await requireTlsOf(await submit(true)), true)
  })

  it('leaves other messages unflagged', async () => {
    assert.equal(await requireTlsOf(await submit(false)), false)
  })

  it('is advertised only after STARTTLS', async () => {
    const { dialog } = await SmtpDialog.open(h.port)
    try {
      const ehlo = await dialog.send('EHLO client.example')
      assert.doesNotMatch(ehlo, /REQUIRETLS/)
      assert.match(await dialog.send('MAIL FROM:<alice@member.example> REQUIRETLS'), /^530 /)
    } finally {
      dialog.close()
    }
  })
})
