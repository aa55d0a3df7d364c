import assert from 'node:assert/strict'
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { describe, it } from 'node:test'
import { dkimVerify } from 'mailauth'
import { SigningError, signMessage } from '../src/index.ts'

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
      { domain: 'member.example', selector: 's1', privateKey: member.privateKey },
      { domain: 'pool.example', selector: 'p1', privateKey: pool.privateKey },
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

  it('refuses to sign with a key it cannot use, naming domain and selector but no key material', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 512 })
    await assert.rejects(
      signMessage(Buffer.from('From: a@member.example\r\n\r\nx\r\n'), [
        { domain: 'member.example', selector: 's1', privateKey },
      ]),
      (err: Error) =>
        err instanceof SigningError && /d=member\.example s=s1/.test(err.message) && !err.message.includes('PRIVATE'),
    )
  })
})
