import type { Keyring } from '@atmos/secrets'

// Endpoint secrets are sealed at rest like DKIM keys (AES-256-GCM under a key-encryption key
// kept in a file, packages/secrets), bound to the member: a sealed secret copied to another
// member's row does not open. The admin seals, the webhooks service opens; both are given the
// same key file (`webhooks.kekFile`, `admin.webhooks.kekFile`), which holds nothing else.

export const webhookSealContext = (memberId: number) => `webhook:${memberId}`

export function sealSecret(keyring: Keyring, memberId: number, secret: Buffer): { kekId: string; sealed: Buffer } {
  return keyring.seal(secret, webhookSealContext(memberId))
}

export function unsealSecret(keyring: Keyring, memberId: number, kekId: string, sealed: Buffer): Buffer {
  return keyring.unseal(kekId, sealed, webhookSealContext(memberId))
}
