import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { secretFileProblem } from '@atmos/secrets'
import { Secp256k1Keypair } from '@atproto/crypto'

// The label signing key lives in a file of its own (mode 0600), never in the database or
// in config values that get logged. The file holds the 32-byte private key in hex.

export class SigningKeyError extends Error {
  override name = 'SigningKeyError'
}

/** Creates a new key file; refuses to overwrite an existing one. Returns the keypair. */
export async function createSigningKeyFile(path: string): Promise<Secp256k1Keypair> {
  if (existsSync(path)) throw new SigningKeyError(`${path} already exists; a signing key is never overwritten`)
  const keypair = await Secp256k1Keypair.create({ exportable: true })
  const hex = Buffer.from(await keypair.export()).toString('hex')
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  // 'wx': fail if another process created it between the check and now.
  writeFileSync(path, `${hex}\n`, { mode: 0o600, flag: 'wx' })
  chmodSync(path, 0o600)
  return keypair
}

/** Loads the key file, refusing one others could have read (the rule of @atmos/secrets). */
export async function loadSigningKeyFile(path: string): Promise<Secp256k1Keypair> {
  let text: string
  try {
    const problem = secretFileProblem(path, statSync(path))
    if (problem) throw new SigningKeyError(problem)
    text = readFileSync(path, 'utf8').trim()
  } catch (err) {
    if (err instanceof SigningKeyError) throw err
    throw new SigningKeyError(`cannot read signing key ${path}: ${(err as Error).message}`)
  }
  if (!/^[0-9a-f]{64}$/i.test(text)) throw new SigningKeyError(`${path} does not hold a 32-byte hex secp256k1 key`)
  return Secp256k1Keypair.import(text, { exportable: false })
}
