import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { createSecretFile, readSecretFile, SecretFileError } from './files.ts'

// Secrets at rest (DKIM private keys) are sealed with AES-256-GCM under a key-encryption
// key (KEK) that lives in a file, never in the database. The file holds one KEK a line,
// `<kekId> <base64 of 32 bytes>`, the first being the one new secrets are sealed with;
// older lines stay so that rows sealed before a rotation still open. Each sealed row
// records the id of the KEK that sealed it.

const KEY_BYTES = 32
const IV_BYTES = 12
const TAG_BYTES = 16
/** Format byte in front of every sealed value, so a later format can be told apart. */
const VERSION = 1
const KEK_ID = /^[A-Za-z0-9._-]{1,64}$/

export type Kek = { id: string; key: Buffer }

/** Every KEK in a file; `current` seals, any of them opens what it sealed. */
export class Keyring {
  readonly current: Kek
  private readonly byId: Map<string, Buffer>

  constructor(keks: Kek[]) {
    if (!keks.length) throw new SecretFileError('a keyring needs at least one key-encryption key')
    this.current = keks[0]!
    this.byId = new Map(keks.map((k) => [k.id, k.key]))
  }

  has(id: string): boolean {
    return this.byId.has(id)
  }

  /**
   * Seals a secret under the current KEK. `context` (e.g. `dkim:example.com:atmos1`) is
   * authenticated but not stored: a sealed value copied to another row does not open.
   */
  seal(plaintext: Buffer | string, context = ''): { kekId: string; sealed: Buffer } {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.current.key, iv)
    cipher.setAAD(Buffer.from(context, 'utf8'))
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
    return {
      kekId: this.current.id,
      sealed: Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), body]),
    }
  }

  /** Opens a sealed value; throws (naming no secret) when the KEK is unknown or anything was altered. */
  unseal(kekId: string, sealed: Buffer, context = ''): Buffer {
    const key = this.byId.get(kekId)
    if (!key) throw new Error(`key-encryption key ${JSON.stringify(kekId)} is not in the keyring`)
    if (sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== VERSION) throw new Error('not a sealed value')
    const iv = sealed.subarray(1, 1 + IV_BYTES)
    const tag = sealed.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES)
    const decipher = createDecipheriv('aes-256-gcm', key, iv)
    decipher.setAAD(Buffer.from(context, 'utf8'))
    decipher.setAuthTag(tag)
    try {
      return Buffer.concat([decipher.update(sealed.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()])
    } catch {
      throw new Error('sealed value does not open: wrong key, wrong context or altered')
    }
  }
}

/** Parses a KEK file's text; every malformed line is an error naming the line, never its key. */
export function parseKeyring(text: string, source = 'key file'): Keyring {
  const keks: Kek[] = []
  const lines = text.split('\n')
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const [id, b64, ...rest] = line.split(/\s+/)
    const key = b64 ? Buffer.from(b64, 'base64') : Buffer.alloc(0)
    if (!id || !KEK_ID.test(id) || rest.length || key.length !== KEY_BYTES || key.toString('base64') !== b64) {
      throw new SecretFileError(`${source} line ${i + 1}: expected "<kekId> <base64 of 32 bytes>"`)
    }
    if (keks.some((k) => k.id === id)) throw new SecretFileError(`${source} line ${i + 1}: duplicate kekId ${id}`)
    keks.push({ id, key })
  }
  if (!keks.length) throw new SecretFileError(`${source} holds no key-encryption key`)
  return new Keyring(keks)
}

/** Loads a KEK file (mode 0600 required). */
export function loadKeyring(path: string): Keyring {
  return parseKeyring(readSecretFile(path), path)
}

/** A fresh KEK line: an id from the date and random bytes, and 32 random bytes. */
export function newKekLine(now = new Date()): string {
  const id = `kek-${now.toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(3).toString('hex')}`
  return `${id} ${randomBytes(KEY_BYTES).toString('base64')}`
}

/** Creates the KEK file with one fresh key when it is missing; true when it was created. */
export function createKeyringFile(path: string): boolean {
  return createSecretFile(path, newKekLine())
}
