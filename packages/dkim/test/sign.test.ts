import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { dkimVerify } from 'mailauth'
import { OVERSIGNED_HEADERS, SigningError, signMessage } from '../src/index.ts'

const VERIFIER = fileURLToPath(new URL('./dkimverify.py', import.meta.url))

type Verdict = Array<{ d: string; pass: boolean }>

/**
 * Each message's signatures as Debian's python3-dkim (dkimpy) judges them: a verifier that is
 * not mailauth, which signs. One process for all the messages.
 */
function pythonVerify(messages: Buffer[], records: Record<string, string>): Promise<Verdict[]> {
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/python3', [VERIFIER, JSON.stringify(records)], (err, stdout, stderr) => {
      if (err) reject(new Error(`dkimverify.py failed (is python3-dkim installed?): ${stderr || err.message}`))
      else resolve(JSON.parse(stdout))
    })
    child.stdin!.end(JSON.stringify(messages.map((m) => m.toString('base64'))))
  })
}

describe('signing', () => {
  it('signs with parsed keys (mailauth as patched), one signature per key, each verifying', async () => {
    const member = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const pool = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const txt = (k: KeyObject) => `v=DKIM1; k=rsa; p=${k.export({ type: 'spki', format: 'der' }).toString('base64')}`
    const records: Record<string, string> = {
      's1._domainkey.member.example': txt(member.publicKey),
      'p1._domainkey.pool.example': txt(pool.publicKey),
    }
    const message = Buffer.from('From: a@member.example\r\nTo: b@elsewhere.example\r\nSubject: hi\r\n\r\nbody\r\n')
    const keys = [
      { domain: 'member.example', selector: 's1', algorithm: 'rsa-sha256' as const, privateKey: member.privateKey },
      { domain: 'pool.example', selector: 'p1', algorithm: 'rsa-sha256' as const, privateKey: pool.privateKey },
    ]
    // Twice with the same key objects: the second run signs with OpenSSL's cached values.
    for (let i = 0; i < 2; i++) {
      const signed = await signMessage(message, keys)
      const result = await dkimVerify(signed, {
        resolver: async (name: string, type: string) => {
          const record = records[name]
          if (type !== 'TXT' || !record) throw Object.assign(new Error('no record'), { code: 'ENOTFOUND' })
          return [[record]]
        },
      })
      assert.deepEqual(
        result.results.map((r) => [r.signingDomain, r.status.result]),
        [
          ['member.example', 'pass'],
          ['pool.example', 'pass'],
        ],
      )
    }
  })

  it('signs with an RSA and an Ed25519 key of the domain and the pool key: three signatures, each verifying (RFC 8463)', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const ed = generateKeyPairSync('ed25519')
    const pool = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const rsaTxt = (k: KeyObject) => `v=DKIM1; k=rsa; p=${k.export({ type: 'spki', format: 'der' }).toString('base64')}`
    // p= of an Ed25519 record is the raw key: the SubjectPublicKeyInfo without its 12-byte prefix.
    const edTxt = (k: KeyObject) =>
      `v=DKIM1; k=ed25519; p=${k.export({ type: 'spki', format: 'der' }).subarray(12).toString('base64')}`
    const records: Record<string, string> = {
      'atmos1r._domainkey.member.example': rsaTxt(rsa.publicKey),
      'atmos1e._domainkey.member.example': edTxt(ed.publicKey),
      'p1._domainkey.pool.example': rsaTxt(pool.publicKey),
    }
    const message = Buffer.from('From: a@member.example\r\nTo: b@elsewhere.example\r\nSubject: hi\r\n\r\nbody\r\n')
    const signed = await signMessage(message, [
      { domain: 'member.example', selector: 'atmos1r', algorithm: 'rsa-sha256', privateKey: rsa.privateKey },
      { domain: 'member.example', selector: 'atmos1e', algorithm: 'ed25519-sha256', privateKey: ed.privateKey },
      { domain: 'pool.example', selector: 'p1', algorithm: 'rsa-sha256', privateKey: pool.privateKey },
    ])
    const result = await dkimVerify(signed, {
      resolver: async (name: string, type: string) => {
        const record = records[name]
        if (type !== 'TXT' || !record) throw Object.assign(new Error('no record'), { code: 'ENOTFOUND' })
        return [[record]]
      },
    })
    assert.deepEqual(
      result.results.map((r) => [r.signingDomain, r.selector, r.algo, r.status.result]),
      [
        ['member.example', 'atmos1r', 'rsa-sha256', 'pass'],
        ['member.example', 'atmos1e', 'ed25519-sha256', 'pass'],
        ['pool.example', 'p1', 'rsa-sha256', 'pass'],
      ],
    )
    // python3-dkim (with PyNaCl for Ed25519) agrees, signature by signature.
    assert.deepEqual(await pythonVerify([signed], records), [
      [
        { d: 'member.example', pass: true },
        { d: 'member.example', pass: true },
        { d: 'pool.example', pass: true },
      ],
    ])
    // Swapping the two member records: each signature verifies only with its own key.
    const swapped = {
      ...records,
      'atmos1r._domainkey.member.example': records['atmos1e._domainkey.member.example']!,
      'atmos1e._domainkey.member.example': records['atmos1r._domainkey.member.example']!,
    }
    const bad = await dkimVerify(signed, {
      resolver: async (name: string) => [[swapped[name as keyof typeof swapped]]],
    })
    assert.deepEqual(
      bad.results.map((r) => r.status.result === 'pass'),
      [false, false, true],
    )
  })

  it('refuses to sign with a key it cannot use, naming domain and selector but no key material', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 512 })
    await assert.rejects(
      signMessage(Buffer.from('From: a@member.example\r\n\r\nx\r\n'), [
        { domain: 'member.example', selector: 's1', algorithm: 'rsa-sha256', privateKey },
      ]),
      (err: Error) =>
        err instanceof SigningError && /d=member\.example s=s1/.test(err.message) && !err.message.includes('PRIVATE'),
    )
  })

  describe('over-signing, checked by an independent verifier (python3-dkim)', () => {
    const member = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const pool = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const txt = (k: KeyObject) => `v=DKIM1; k=rsa; p=${k.export({ type: 'spki', format: 'der' }).toString('base64')}`
    const records = {
      's1._domainkey.member.example': txt(member.publicKey),
      'p1._domainkey.pool.example': txt(pool.publicKey),
    }
    const keys = [
      { domain: 'member.example', selector: 's1', algorithm: 'rsa-sha256' as const, privateKey: member.privateKey },
      { domain: 'pool.example', selector: 'p1', algorithm: 'rsa-sha256' as const, privateKey: pool.privateKey },
    ]
    // As the relay writes it: its Received and fields on top; Sender, Reply-To, Cc and the
    // List-Unsubscribe pair absent, so over-signing must cover names the message lacks.
    const message = Buffer.from(
      [
        'Received: by relay.pool.example with ESMTPSA id 1;',
        '\tSun, 06 Dec 2026 19:00:00 +0000',
        'Feedback-ID: tx:m7:atmos:atmospool',
        'X-Atmos-Member-Did: did:plc:abc',
        'X-Atmos-Ref: tok.123',
        'From: Alice <a@member.example>',
        'To: b@elsewhere.example',
        'Subject: hi',
        'Date: Sun, 06 Dec 2026 19:00:00 +0000',
        'Message-ID: <1@member.example>',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: 8bit',
        '',
        'body',
        '',
      ].join('\r\n'),
    )

    it('both signatures pass as signed, and after a later hop adds its Received on top', async () => {
      const signed = await signMessage(message, keys)
      const both = [
        { d: 'member.example', pass: true },
        { d: 'pool.example', pass: true },
      ]
      const relayed = Buffer.concat([
        Buffer.from(
          'Received: from relay.pool.example by mx.elsewhere.example;\r\n\tSun, 06 Dec 2026 19:00:01 +0000\r\n',
        ),
        signed,
      ])
      assert.deepEqual(await pythonVerify([signed, relayed], records), [both, both])
    })

    it('prepending any over-signed field, present in the message or not, breaks both signatures', async () => {
      const signed = await signMessage(message, keys)
      const sig = /^DKIM-Signature:[\s\S]*?(?=\r\n\S)/.exec(signed.toString())![0]
      const h = /\bh=([^;]+)/.exec(sig)![1]!.replace(/\s+/g, '').toLowerCase().split(':')
      // What a forger would add: after the signatures would do as well as before them.
      const forged = OVERSIGNED_HEADERS.map((name) => Buffer.concat([Buffer.from(`${name}: forged-value\r\n`), signed]))
      // A field we do not over-sign may be added (nothing reads it as the message's).
      const harmless = Buffer.concat([Buffer.from('X-Spam-Score: 0\r\n'), signed])
      const verdicts = await pythonVerify([...forged, harmless], records)
      OVERSIGNED_HEADERS.forEach((name, i) => {
        assert.deepEqual(
          verdicts[i]!.map((r) => r.pass),
          [false, false],
          `a prepended ${name} must break both signatures`,
        )
        const count = message
          .toString()
          .split('\r\n')
          .filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`)).length
        assert.equal(
          h.filter((k) => k === name.toLowerCase()).length,
          count + 1,
          `${name} is named once more than present`,
        )
      })
      assert.deepEqual(
        verdicts.at(-1)!.map((r) => r.pass),
        [true, true],
      )
    })
  })
})
