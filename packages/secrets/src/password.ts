import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'

// SMTP passwords are stored only as scrypt hashes in PHC string format,
// `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64 without padding), so the cost
// parameters travel with each hash and can be raised later without a migration.

export type ScryptParams = { ln: number; r: number; p: number }

/** N = 2^15, r = 8, p = 1: OWASP's minimum for scrypt, about 0.2 s and 32 MiB a hash on a 2-CPU machine. */
export const DEFAULT_SCRYPT: ScryptParams = { ln: 15, r: 8, p: 1 }
const SALT_BYTES = 16
const HASH_BYTES = 32
const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/

function derive(password: string, salt: Buffer, params: ScryptParams, length: number): Promise<Buffer> {
  const N = 2 ** params.ln
  return new Promise((resolve, reject) =>
    scrypt(
      password.normalize('NFC'),
      salt,
      length,
      { N, r: params.r, p: params.p, maxmem: 256 * N * params.r },
      (err, key) => (err ? reject(err) : resolve(key)),
    ),
  )
}

const b64 = (buf: Buffer) => buf.toString('base64').replace(/=+$/, '')

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const hash = await derive(password, salt, params, HASH_BYTES)
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`
}

/** True when the password matches; false for a wrong one or a hash that is not ours. */
export async function verifyPassword(password: string, phc: string): Promise<boolean> {
  const m = PHC.exec(phc)
  if (!m) return false
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) }
  if (params.ln < 10 || params.ln > 22 || params.r < 1 || params.p < 1) return false
  const expected = Buffer.from(m[5]!, 'base64')
  const actual = await derive(password, Buffer.from(m[4]!, 'base64'), params, expected.length)
  return expected.length > 0 && timingSafeEqual(actual, expected)
}

/**
 * A hash to verify against when there is no such user, so that an unknown user name
 * costs the same time as a wrong password and does not reveal which names exist.
 */
let dummy: Promise<string> | undefined
export function dummyPasswordHash(): Promise<string> {
  dummy ??= hashPassword(randomBytes(16).toString('hex'))
  return dummy
}

/** A random password for a new credential: 32 characters of base64url (192 bits). */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url')
}
