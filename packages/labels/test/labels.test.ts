import assert from 'node:assert/strict'
import { mkdtempSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { Secp256k1Keypair } from '@atproto/crypto'
import * as dagCbor from '@ipld/dag-cbor'
import {
  createSigningKeyFile,
  decodeFrame,
  encodeErrorFrame,
  encodeMessageFrame,
  type Label,
  labelSigningBytes,
  labelWireObject,
  loadSigningKeyFile,
  signLabel,
  verifyLabel,
} from '../src/index.ts'

// A published vector from the Go reference implementation (indigo, atproto/label).
const GOLDEN = {
  didKey: 'did:key:zQ3shcnfWLQN1bY4d2patsEAYFzy4xp1zdckEvHsV7S4ocTnC',
  label: {
    ver: 1,
    src: 'did:plc:n3timvoib5nau7gvwd6cshap',
    uri: 'did:plc:44ybard66vv44zksje25o7dz',
    val: 'bladerunner',
    cts: '2024-10-23T17:51:19.128Z',
  } satisfies Label,
  sig: Buffer.from('uCRNA5mTzh078T5xZtkvLEt/O+z0gsKM3aqRI/lVAB8ZtbMnznwS/JwHopZE40JhNNDj80z8gsDLAp/hWqG5Pg', 'base64'),
}

describe('label signatures', () => {
  it('verify the Go reference implementation golden vector', async () => {
    assert.equal(await verifyLabel({ ...GOLDEN.label, sig: GOLDEN.sig }, GOLDEN.didKey), true)
  })

  it('reject the golden vector when val changes or neg:false is added', async () => {
    assert.equal(await verifyLabel({ ...GOLDEN.label, val: 'bladerunner2', sig: GOLDEN.sig }, GOLDEN.didKey), false)
    // neg:false is left out of what we sign, so an encoder that keeps it must fail.
    const withNegFalse = dagCbor.encode({ ...GOLDEN.label, neg: false })
    assert.notDeepEqual(withNegFalse, labelSigningBytes(GOLDEN.label))
    const { verifySignature } = await import('@atproto/crypto')
    assert.equal(await verifySignature(GOLDEN.didKey, withNegFalse, GOLDEN.sig), false)
    assert.equal(await verifyLabel({ ...GOLDEN.label, neg: true, sig: GOLDEN.sig }, GOLDEN.didKey), false)
  })

  it('sign with low-S compact signatures that verify against the did:key', async () => {
    const keypair = await Secp256k1Keypair.create()
    const label: Label = {
      ver: 1,
      src: 'did:plc:labeler',
      uri: 'did:plc:member',
      val: 'relay-member',
      cts: new Date().toISOString(),
    }
    for (let i = 0; i < 20; i++) {
      const signed = await signLabel({ ...label, cts: new Date(Date.now() + i).toISOString() }, keypair)
      assert.equal(signed.sig.length, 64)
      // S must be in the lower half of the curve order.
      const s = BigInt(`0x${Buffer.from(signed.sig.slice(32)).toString('hex')}`)
      const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
      assert.ok(s <= n / 2n, 'high-S signature')
      assert.equal(await verifyLabel(signed, keypair.did()), true)
    }
    const other = await Secp256k1Keypair.create()
    assert.equal(await verifyLabel(await signLabel(label, keypair), other.did()), false)
  })

  it('sign exactly the schema fields: neg only when true, exp and cid when present, no $type', async () => {
    const keypair = await Secp256k1Keypair.create()
    const label: Label = {
      ver: 1,
      src: 'did:plc:labeler',
      uri: 'did:plc:member',
      val: 'verified-mail-operator',
      neg: true,
      cts: '2026-11-25T00:00:00.000Z',
      exp: '2026-12-01T00:00:00.000Z',
    }
    const signed = await signLabel(label, keypair)
    const wire = labelWireObject(signed)
    assert.deepEqual(Object.keys(wire).sort(), ['cts', 'exp', 'neg', 'sig', 'src', 'uri', 'val', 'ver'])
    assert.deepEqual(Object.keys(labelWireObject(await signLabel({ ...label, neg: false }, keypair))).sort(), [
      'cts',
      'exp',
      'sig',
      'src',
      'uri',
      'val',
      'ver',
    ])
    assert.equal(await verifyLabel({ ...signed, exp: '2027-01-01T00:00:00.000Z' }, keypair.did()), false)
    assert.equal(await verifyLabel({ ...signed, sig: new Uint8Array(64) }, keypair.did()), false)
    assert.equal(await verifyLabel({ ...signed, sig: signed.sig.slice(1) }, keypair.did()), false)
  })
})

describe('signing key file', () => {
  it('is created 0600, never overwritten, and loads to the same did:key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atmos-key-'))
    const path = join(dir, 'keys', 'label-signing.key')
    const created = await createSigningKeyFile(path)
    assert.equal(statSync(path).mode & 0o777, 0o600)
    await assert.rejects(createSigningKeyFile(path), /already exists; a signing key is never overwritten/)
    const loaded = await loadSigningKeyFile(path)
    assert.equal(loaded.did(), created.did())
    assert.match(loaded.did(), /^did:key:zQ3s/)
  })

  it('refuses a key file others can read, or one that holds no key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atmos-key-'))
    const open = join(dir, 'open.key')
    writeFileSync(open, `${'ab'.repeat(32)}\n`, { mode: 0o644 })
    await assert.rejects(loadSigningKeyFile(open), /readable by others \(mode 644\)/)
    const junk = join(dir, 'junk.key')
    writeFileSync(junk, 'not a key', { mode: 0o600 })
    await assert.rejects(loadSigningKeyFile(junk), /does not hold a 32-byte hex secp256k1 key/)
    await assert.rejects(loadSigningKeyFile(join(dir, 'missing.key')), /cannot read signing key/)
  })
})

describe('event-stream frames', () => {
  it('encode a #labels message as header then body, and decode it back', () => {
    const bytes = encodeMessageFrame('#labels', { seq: 7, labels: [] })
    const frame = decodeFrame(bytes)
    assert.deepEqual(frame, { header: { op: 1, t: '#labels' }, body: { seq: 7, labels: [] } })
  })

  it('encode an error frame', () => {
    assert.deepEqual(decodeFrame(encodeErrorFrame('FutureCursor', 'Cursor in the future.')), {
      header: { op: -1 },
      body: { error: 'FutureCursor', message: 'Cursor in the future.' },
    })
  })

  it('refuse trailing bytes and unknown headers', () => {
    const bytes = encodeMessageFrame('#labels', { seq: 1, labels: [] })
    assert.throws(() => decodeFrame(new Uint8Array([...bytes, 0])), /after its body/)
    assert.throws(
      () => decodeFrame(new Uint8Array([...dagCbor.encode({ op: 2 }), ...dagCbor.encode({})])),
      /unknown frame header/,
    )
  })
})
