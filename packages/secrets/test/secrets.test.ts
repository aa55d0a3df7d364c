import assert from 'node:assert/strict'
import { createPublicKey, createSign, createVerify, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto'
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import {
  createKeyringFile,
  createSecretFile,
  dkimTxtRecord,
  generateDkimKeyPair,
  generateEd25519DkimKeyPair,
  generatePassword,
  hashPassword,
  loadKeyring,
  newKekLine,
  parseKeyring,
  readSecretFile,
  SecretFileError,
  secretFileProblem,
  verifyPassword,
} from '../src/index.ts'

const dir = () => mkdtempSync(join(tmpdir(), 'atmos-secrets-'))

describe('sealing under a key-encryption key', () => {
  it('round-trips, and the sealed bytes reveal nothing of the plaintext', () => {
    const ring = parseKeyring(newKekLine())
    const secret = '-----BEGIN PRIVATE KEY-----\nMIIE...'
    const { kekId, sealed } = ring.seal(secret, 'dkim:example.com:s1')
    assert.equal(kekId, ring.current.id)
    assert.ok(!sealed.includes(Buffer.from('PRIVATE')))
    assert.equal(ring.unseal(kekId, sealed, 'dkim:example.com:s1').toString(), secret)
    // a fresh IV each time
    assert.notDeepEqual(ring.seal(secret).sealed, ring.seal(secret).sealed)
  })

  it('refuses a wrong context, an altered byte, an unknown KEK and a foreign key', () => {
    const ring = parseKeyring(newKekLine())
    const { kekId, sealed } = ring.seal('secret', 'dkim:a.example:s1')
    assert.throws(() => ring.unseal(kekId, sealed, 'dkim:b.example:s1'), /does not open/)
    const altered = Buffer.from(sealed)
    altered[altered.length - 1]! ^= 1
    assert.throws(() => ring.unseal(kekId, altered, 'dkim:a.example:s1'), /does not open/)
    assert.throws(() => ring.unseal('nope', sealed, 'dkim:a.example:s1'), /not in the keyring/)
    const other = parseKeyring(`${kekId} ${Buffer.alloc(32, 7).toString('base64')}`)
    assert.throws(() => other.unseal(kekId, sealed, 'dkim:a.example:s1'), /does not open/)
  })

  it('seals with the first line and opens with any later one (rotation)', () => {
    const old = parseKeyring(newKekLine(new Date('2025-01-01')))
    const sealedOld = old.seal('older')
    const oldLine = `${old.current.id} ${old.current.key.toString('base64')}`
    const rotated = parseKeyring(`${newKekLine()}\n${oldLine}\n`)
    assert.notEqual(rotated.current.id, old.current.id)
    assert.equal(rotated.unseal(sealedOld.kekId, sealedOld.sealed).toString(), 'older')
    assert.equal(rotated.seal('new').kekId, rotated.current.id)
  })

  it('rejects malformed KEK files naming the line but never echoing key material', () => {
    const short = Buffer.alloc(16, 1).toString('base64')
    assert.throws(
      () => parseKeyring(`k1 ${short}`, 'f'),
      (err: Error) => {
        assert.match(err.message, /f line 1/)
        assert.ok(!err.message.includes(short))
        return true
      },
    )
    assert.throws(() => parseKeyring('', 'f'), /no key-encryption key/)
    const line = newKekLine()
    assert.throws(() => parseKeyring(`${line}\n${line}`, 'f'), /duplicate kekId/)
  })

  it('creates the KEK file 0600 once and refuses to load it when others can read it', () => {
    const path = join(dir(), 'sub', 'kek')
    assert.equal(createKeyringFile(path), true)
    assert.equal(statSync(path).mode & 0o777, 0o600)
    const text = readFileSync(path, 'utf8')
    assert.equal(createKeyringFile(path), false)
    assert.equal(readFileSync(path, 'utf8'), text)
    const ring = loadKeyring(path)
    assert.equal(ring.unseal(ring.current.id, ring.seal('x').sealed).toString(), 'x')
    chmodSync(path, 0o644)
    assert.throws(
      () => loadKeyring(path),
      (err: Error) => err instanceof SecretFileError && /chmod 600/.test(err.message),
    )
  })

  it('secret files: created 0600, never overwritten, unreadable ones named without content', () => {
    const path = join(dir(), 'token.secret')
    assert.equal(createSecretFile(path, 'abc'), true)
    assert.equal(createSecretFile(path, 'def'), false)
    assert.equal(readSecretFile(path), 'abc')
    assert.throws(() => readSecretFile(join(dir(), 'missing')), /cannot read secret file .*ENOENT/)
    const loose = join(dir(), 'loose')
    writeFileSync(loose, 'x', { mode: 0o640 })
    chmodSync(loose, 0o640)
    assert.throws(() => readSecretFile(loose), /mode 640/)
  })
})

describe('password hashes', () => {
  it('hashes to a PHC scrypt string with a fresh salt and verifies only the right password', async () => {
    const password = generatePassword()
    assert.match(password, /^[A-Za-z0-9_-]{32}$/)
    const phc = await hashPassword(password)
    assert.match(phc, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
    assert.ok(!phc.includes(password))
    assert.notEqual(await hashPassword(password), phc)
    assert.equal(await verifyPassword(password, phc), true)
    assert.equal(await verifyPassword(`${password}x`, phc), false)
    assert.equal(await verifyPassword('', phc), false)
  })

  it('reads the cost from the hash, and refuses hashes that are not scrypt PHC strings', async () => {
    const cheap = await hashPassword('pw', { ln: 10, r: 8, p: 1 })
    assert.match(cheap, /^\$scrypt\$ln=10,/)
    assert.equal(await verifyPassword('pw', cheap), true)
    assert.equal(await verifyPassword('pw', 'pw'), false)
    assert.equal(await verifyPassword('pw', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA'), false)
    assert.equal(await verifyPassword('pw', cheap.replace('ln=10', 'ln=4')), false)
  })

  it('normalizes Unicode so the same password typed two ways matches', async () => {
    const phc = await hashPassword('caf\u00e9', { ln: 10, r: 8, p: 1 })
    assert.equal(await verifyPassword('cafe\u0301', phc), true)
  })
})

describe('DKIM keys', () => {
  it('generates an RSA-2048 pair whose p= value verifies what the private key signs', async () => {
    const pair = await generateDkimKeyPair()
    assert.equal(pair.bits, 2048)
    assert.match(pair.privateKeyPem, /^-----BEGIN PRIVATE KEY-----/)
    const pub = createPublicKey({ key: Buffer.from(pair.publicKey, 'base64'), format: 'der', type: 'spki' })
    assert.equal(pub.asymmetricKeyDetails?.modulusLength, 2048)
    const sig = createSign('sha256').update('data').sign(pair.privateKeyPem)
    assert.equal(createVerify('sha256').update('data').verify(pub, sig), true)
    assert.equal(dkimTxtRecord(pair.publicKey), `v=DKIM1; k=rsa; p=${pair.publicKey}`)
  })

  it('generates an Ed25519 pair whose p= is the raw 32-byte key (RFC 8463) and verifies what the private key signs', async () => {
    const pair = await generateEd25519DkimKeyPair()
    assert.equal(pair.bits, 256)
    assert.match(pair.privateKeyPem, /^-----BEGIN PRIVATE KEY-----/)
    const raw = Buffer.from(pair.publicKey, 'base64')
    assert.equal(raw.length, 32)
    // The record's key, put back into a SubjectPublicKeyInfo, is the pair's public key.
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw])
    const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' })
    assert.equal(pub.asymmetricKeyType, 'ed25519')
    const sig = cryptoSign(null, Buffer.from('data'), pair.privateKeyPem)
    assert.equal(cryptoVerify(null, Buffer.from('data'), pub, sig), true)
    assert.equal(cryptoVerify(null, Buffer.from('other'), pub, sig), false)
    assert.equal(dkimTxtRecord(pair.publicKey, 'ed25519'), `v=DKIM1; k=ed25519; p=${pair.publicKey}`)
    assert.notEqual((await generateEd25519DkimKeyPair()).publicKey, pair.publicKey)
  })
})

describe('secret file ownership rule', () => {
  it('a file we own must be 0600 or less; a root-owned one may be group-readable (Kubernetes Secrets)', () => {
    const me = 1000
    assert.equal(secretFileProblem('k', { mode: 0o600, uid: me }, me), undefined)
    assert.equal(secretFileProblem('k', { mode: 0o400, uid: me }, me), undefined)
    assert.match(secretFileProblem('k', { mode: 0o640, uid: me }, me) ?? '', /readable by others \(mode 640\)/)
    assert.equal(secretFileProblem('k', { mode: 0o440, uid: 0 }, me), undefined, 'a Secret volume with fsGroup')
    assert.equal(secretFileProblem('k', { mode: 0o640, uid: 0 }, me), undefined)
    assert.match(secretFileProblem('k', { mode: 0o644, uid: 0 }, me) ?? '', /at most 640/)
    assert.match(secretFileProblem('k', { mode: 0o660, uid: 0 }, me) ?? '', /at most 640/)
    assert.match(secretFileProblem('k', { mode: 0o600, uid: 1234 }, me) ?? '', /owned by uid 1234/)
    // Running as root, root owns it: the strict rule.
    assert.match(secretFileProblem('k', { mode: 0o640, uid: 0 }, 0) ?? '', /chmod 600/)
  })
})
