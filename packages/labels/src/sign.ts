import { type Secp256k1Keypair, verifySignature } from '@atproto/crypto'
import { type Label, labelSigningBytes, type SignedLabel } from './label.ts'

/**
 * Signs a label: SHA-256 over its DAG-CBOR encoding, secp256k1, compact 64-byte low-S
 * signature (Secp256k1Keypair.sign hashes and normalises S itself).
 */
export async function signLabel(label: Label, keypair: Secp256k1Keypair): Promise<SignedLabel> {
  const sig = await keypair.sign(labelSigningBytes(label))
  return { ...label, sig }
}

/**
 * Verifies a label's signature against the labeler's did:key. High-S (malleable)
 * signatures are refused, as every atproto implementation does.
 */
export async function verifyLabel(
  label: SignedLabel | (Label & { sig?: Uint8Array }),
  didKey: string,
): Promise<boolean> {
  if (label.sig?.length !== 64) return false
  const { sig, ...rest } = label
  try {
    return await verifySignature(didKey, labelSigningBytes(rest as Label), sig)
  } catch {
    return false
  }
}
